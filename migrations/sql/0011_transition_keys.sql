-- The audit trail without its identity indexes (version 11): task_transitions and step_transitions
-- keep their id column, which orders the rows of a trail written in the same instant, but lose
-- its primary key index. No statement finds a transition by id; every read goes by (task_id,
-- sort_key), (step_id, sort_key) or task_id, and those unique indexes, which also reject a second
-- transition at the same place, stay. The primary key cost one b-tree insert per transition, and
-- a one-step task writes about ten transitions.
--
-- Logical replication identifies the rows by the unique (task_id, sort_key) and (step_id,
-- sort_key) keys instead, so that a publication of these tables still replicates retention's
-- deletes.
ALTER TABLE {schema}.task_transitions DROP CONSTRAINT task_transitions_pkey;
ALTER TABLE {schema}.step_transitions DROP CONSTRAINT step_transitions_pkey;
ALTER TABLE {schema}.task_transitions REPLICA IDENTITY USING INDEX task_transitions_sort_unique;
ALTER TABLE {schema}.step_transitions REPLICA IDENTITY USING INDEX step_transitions_sort_unique;
