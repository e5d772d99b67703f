-- The audit trail without foreign keys (version 10): task_transitions and step_transitions no
-- longer reference tasks and steps.
--
-- Every transition is written by the store in the statement (or transaction) that moves its row,
-- from that update's RETURNING: the row exists and is locked by the writer when its transition is
-- inserted, so the check added nothing but its cost. That cost was a trigger and an SPI query per
-- inserted transition (a FOR KEY SHARE lookup of the step and of the task): about 14 % of the
-- server's CPU per one-step task in the bench's throughput row (perf, bench/BENCHMARKS.md).
--
-- PurgeTasks deletes a task's transitions before its steps and the task (store/postgres
-- retention.go), so retention leaves nothing behind. Whoever deletes tasks by hand deletes their
-- transitions too: the cascade is gone with the keys.
ALTER TABLE {schema}.step_transitions DROP CONSTRAINT step_transitions_step_id_fkey;
ALTER TABLE {schema}.step_transitions DROP CONSTRAINT step_transitions_task_id_fkey;
ALTER TABLE {schema}.task_transitions DROP CONSTRAINT task_transitions_task_id_fkey;
