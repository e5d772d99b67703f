-- Dead letters (version 6): every entry of a task, by time, for the staleness detector's check
-- that a blocked task has no entry since it was blocked, and for reading a task's entries.
CREATE INDEX dead_letters_task_idx ON {schema}.dead_letters (task_id, created_at);
