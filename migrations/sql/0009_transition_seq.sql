-- Transition sequence (version 9): a task's and a step's current transition is the one whose
-- sort_key is the row's transition_seq, where it used to be the one flagged most_recent.
--
-- Every state change updates the task's or step's row anyway; it now also bumps transition_seq
-- there and inserts its transition with that sort_key, where it used to update the previous
-- transition too (most_recent = false: one more tuple version and its index entries per
-- transition, on the two busiest tables). UNIQUE (task_id, sort_key) and (step_id, sort_key)
-- still reject a second transition at the same place, and find the current one.
--
-- A new row starts at its create transition (sort_key 1); the store sets more when it writes
-- more transitions with the row (a task's first hops, a root step's enqueue).
ALTER TABLE {schema}.tasks ADD COLUMN transition_seq integer NOT NULL DEFAULT 1;
ALTER TABLE {schema}.steps ADD COLUMN transition_seq integer NOT NULL DEFAULT 1;

UPDATE {schema}.tasks t SET transition_seq = m.k
  FROM (SELECT task_id, max(sort_key) AS k FROM {schema}.task_transitions GROUP BY task_id) m
 WHERE t.task_id = m.task_id AND t.transition_seq <> m.k;
UPDATE {schema}.steps s SET transition_seq = m.k
  FROM (SELECT step_id, max(sort_key) AS k FROM {schema}.step_transitions GROUP BY step_id) m
 WHERE s.step_id = m.step_id AND s.transition_seq <> m.k;

DROP INDEX {schema}.task_transitions_current_idx;
DROP INDEX {schema}.step_transitions_current_idx;
ALTER TABLE {schema}.task_transitions DROP COLUMN most_recent;
ALTER TABLE {schema}.step_transitions DROP COLUMN most_recent;

-- The archive tables follow their sources (0007): most_recent goes, and transition_seq comes
-- before archived_at, which is moved to the end again (a test compares the columns in order).
ALTER TABLE {schema}.archive_task_transitions DROP COLUMN most_recent;
ALTER TABLE {schema}.archive_step_transitions DROP COLUMN most_recent;

ALTER TABLE {schema}.archive_tasks ADD COLUMN transition_seq integer NOT NULL DEFAULT 1;
UPDATE {schema}.archive_tasks t SET transition_seq = m.k
  FROM (SELECT task_id, max(sort_key) AS k FROM {schema}.archive_task_transitions GROUP BY task_id) m
 WHERE t.task_id = m.task_id AND t.transition_seq <> m.k;
ALTER TABLE {schema}.archive_tasks RENAME COLUMN archived_at TO archived_at_0007;
ALTER TABLE {schema}.archive_tasks ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
UPDATE {schema}.archive_tasks SET archived_at = archived_at_0007;
ALTER TABLE {schema}.archive_tasks DROP COLUMN archived_at_0007; -- drops archive_tasks_archived_idx
CREATE INDEX archive_tasks_archived_idx ON {schema}.archive_tasks (archived_at);

ALTER TABLE {schema}.archive_steps ADD COLUMN transition_seq integer NOT NULL DEFAULT 1;
UPDATE {schema}.archive_steps s SET transition_seq = m.k
  FROM (SELECT step_id, max(sort_key) AS k FROM {schema}.archive_step_transitions GROUP BY step_id) m
 WHERE s.step_id = m.step_id AND s.transition_seq <> m.k;
ALTER TABLE {schema}.archive_steps RENAME COLUMN archived_at TO archived_at_0007;
ALTER TABLE {schema}.archive_steps ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();
UPDATE {schema}.archive_steps SET archived_at = archived_at_0007;
ALTER TABLE {schema}.archive_steps DROP COLUMN archived_at_0007;
