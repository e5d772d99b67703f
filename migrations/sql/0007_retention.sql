-- Retention (version 7): the elected engine deletes, or archives, tasks that ended longer ago than
-- a configured period (tasker.RetentionConfig). Only complete, cancelled and resolved_manually
-- tasks are purged: a task in error waits for a person.
--
-- The purge takes the oldest ended tasks first, in bounded batches, through this index; its
-- predicate is the purge's, so the index holds only purgeable tasks.
CREATE INDEX tasks_ended_idx ON {schema}.tasks (completed_at, task_id)
    WHERE state IN ('complete', 'cancelled', 'resolved_manually');

-- Archive tables: with RetentionConfig.Archive the purge copies a task's rows here, in the same
-- transaction that deletes them. Each has its source table's columns (same names and types, no
-- keys, no foreign keys, no checks) and archived_at. A migration that adds a column to a source
-- table must add it to its archive table too; a test compares them (store/postgres).
CREATE TABLE {schema}.archive_tasks (LIKE {schema}.tasks INCLUDING DEFAULTS);
CREATE TABLE {schema}.archive_steps (LIKE {schema}.steps INCLUDING DEFAULTS);
CREATE TABLE {schema}.archive_edges (LIKE {schema}.edges INCLUDING DEFAULTS);
CREATE TABLE {schema}.archive_task_transitions (LIKE {schema}.task_transitions INCLUDING DEFAULTS);
CREATE TABLE {schema}.archive_step_transitions (LIKE {schema}.step_transitions INCLUDING DEFAULTS);
CREATE TABLE {schema}.archive_dead_letters (LIKE {schema}.dead_letters INCLUDING DEFAULTS);
ALTER TABLE {schema}.archive_tasks            ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE {schema}.archive_steps            ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE {schema}.archive_edges            ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE {schema}.archive_task_transitions ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE {schema}.archive_step_transitions ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE {schema}.archive_dead_letters     ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
-- Reading an archived task back, and pruning the archive by age.
CREATE INDEX archive_tasks_id_idx ON {schema}.archive_tasks (task_id);
CREATE INDEX archive_tasks_archived_idx ON {schema}.archive_tasks (archived_at);
CREATE INDEX archive_steps_task_idx ON {schema}.archive_steps (task_id);
CREATE INDEX archive_edges_task_idx ON {schema}.archive_edges (task_id);
CREATE INDEX archive_task_transitions_task_idx ON {schema}.archive_task_transitions (task_id);
CREATE INDEX archive_step_transitions_task_idx ON {schema}.archive_step_transitions (task_id);
CREATE INDEX archive_dead_letters_task_idx ON {schema}.archive_dead_letters (task_id);
-- Deleting a step checks dead_letters.step_id (ON DELETE CASCADE): without this index each purged
-- step would scan the whole dead-letter table.
CREATE INDEX dead_letters_step_idx ON {schema}.dead_letters (step_id) WHERE step_id IS NOT NULL;

-- The staleness detector pages through the tasks not yet terminal in task_id order
-- (store/postgres ActiveTasks); this index holds only those, so a pass reads what it judges
-- rather than every task ever kept.
CREATE INDEX tasks_active_idx ON {schema}.tasks (task_id)
    WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');
