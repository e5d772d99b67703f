-- The sweeper (version 3): steps waiting in the queue for a long time, for queues outside the
-- database whose messages can be lost between a commit and a publish.
CREATE INDEX steps_waiting_idx ON {schema}.steps (updated_at)
    WHERE state IN ('enqueued', 'waiting_for_retry');
