-- Decision points and batches (version 2): steps created at run time.
ALTER TABLE {schema}.steps
    -- A batch worker beyond its batch's parallelism waits, held, until a sibling finishes.
    ADD COLUMN held             boolean NOT NULL DEFAULT false,
    -- The batchable step that created this worker; its siblings share it.
    ADD COLUMN batch_group      uuid,
    -- The batch's failure strategy, for workers: continue_on_failure, fail_fast or isolate.
    ADD COLUMN failure_strategy text,
    ADD CONSTRAINT steps_failure_strategy_check CHECK (
        failure_strategy IS NULL OR failure_strategy IN ('continue_on_failure', 'fail_fast', 'isolate'));
CREATE INDEX steps_batch_group_idx ON {schema}.steps (batch_group, state) WHERE batch_group IS NOT NULL;

ALTER TABLE {schema}.tasks
    -- Failed steps held for manual resolution without stopping the rest of the task (isolate).
    ADD COLUMN steps_isolated integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT tasks_isolated_check CHECK (steps_isolated >= 0 AND steps_isolated <= steps_failed);
