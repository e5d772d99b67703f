-- The single-column checks as domains (version 12). A table's CHECK constraints are stored as
-- serialized expression trees, and PostgreSQL parses every one of them again in each statement
-- that inserts or updates a row of the table: the state lists (a text array written out byte by
-- byte) cost about 14 % of the server's CPU on the hot path, where a step's outcome runs a dozen
-- one-row statements. A domain's checks are parsed once per connection and kept, and they are
-- checked only on the columns a statement assigns. The rules stay the same; only the constraints'
-- names change (a violation names the domain and its check, such as task_state_check).
--
-- The columns change type before the domains have their checks, so that no table is rewritten
-- (text to a domain over text without checks is binary coercible); adding a check to a domain
-- then reads the tables once to validate their rows. The checks that compare two columns stay on
-- their tables.
CREATE DOMAIN {schema}.task_state AS text;
CREATE DOMAIN {schema}.step_state AS text;
CREATE DOMAIN {schema}.step_type AS text;
CREATE DOMAIN {schema}.step_backoff AS text;
CREATE DOMAIN {schema}.failure_strategy AS text;
CREATE DOMAIN {schema}.counter AS integer;
CREATE DOMAIN {schema}.attempt_limit AS integer;

ALTER TABLE {schema}.tasks
    ALTER COLUMN state TYPE {schema}.task_state,
    ALTER COLUMN steps_total TYPE {schema}.counter,
    ALTER COLUMN steps_unfinished TYPE {schema}.counter,
    ALTER COLUMN steps_active TYPE {schema}.counter,
    ALTER COLUMN steps_failed TYPE {schema}.counter,
    ALTER COLUMN steps_isolated TYPE {schema}.counter,
    DROP CONSTRAINT tasks_state_check,
    DROP CONSTRAINT tasks_counters_check,
    DROP CONSTRAINT tasks_isolated_check,
    ADD CONSTRAINT tasks_isolated_check CHECK (steps_isolated <= steps_failed);

ALTER TABLE {schema}.steps
    ALTER COLUMN state TYPE {schema}.step_state,
    ALTER COLUMN step_type TYPE {schema}.step_type,
    ALTER COLUMN backoff TYPE {schema}.step_backoff,
    ALTER COLUMN failure_strategy TYPE {schema}.failure_strategy,
    ALTER COLUMN attempts TYPE {schema}.counter,
    ALTER COLUMN max_attempts TYPE {schema}.attempt_limit,
    ALTER COLUMN parents_total TYPE {schema}.counter,
    ALTER COLUMN parents_unfinished TYPE {schema}.counter,
    DROP CONSTRAINT steps_state_check,
    DROP CONSTRAINT steps_type_check,
    DROP CONSTRAINT steps_backoff_check,
    DROP CONSTRAINT steps_failure_strategy_check,
    DROP CONSTRAINT steps_attempts_check,
    DROP CONSTRAINT steps_parents_check,
    ADD CONSTRAINT steps_parents_check CHECK (parents_unfinished <= parents_total);

ALTER TABLE {schema}.task_transitions
    ALTER COLUMN from_state TYPE {schema}.task_state,
    ALTER COLUMN to_state TYPE {schema}.task_state,
    DROP CONSTRAINT task_transitions_to_check,
    DROP CONSTRAINT task_transitions_from_check;

ALTER TABLE {schema}.step_transitions
    ALTER COLUMN from_state TYPE {schema}.step_state,
    ALTER COLUMN to_state TYPE {schema}.step_state,
    DROP CONSTRAINT step_transitions_to_check,
    DROP CONSTRAINT step_transitions_from_check;

ALTER DOMAIN {schema}.task_state ADD CONSTRAINT task_state_check CHECK (VALUE IN (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
    'complete', 'error', 'cancelled', 'resolved_manually'));
ALTER DOMAIN {schema}.step_state ADD CONSTRAINT step_state_check CHECK (VALUE IN (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'waiting_for_retry',
    'complete', 'error', 'cancelled', 'resolved_manually'));
ALTER DOMAIN {schema}.step_type ADD CONSTRAINT step_type_check CHECK (VALUE IN (
    'standard', 'decision', 'deferred_convergence', 'batchable', 'batch_worker'));
ALTER DOMAIN {schema}.step_backoff ADD CONSTRAINT step_backoff_check CHECK (VALUE IN ('exponential', 'linear', 'none'));
ALTER DOMAIN {schema}.failure_strategy ADD CONSTRAINT failure_strategy_check CHECK (
    VALUE IN ('continue_on_failure', 'fail_fast', 'isolate'));
ALTER DOMAIN {schema}.counter ADD CONSTRAINT counter_check CHECK (VALUE >= 0);
ALTER DOMAIN {schema}.attempt_limit ADD CONSTRAINT attempt_limit_check CHECK (VALUE >= 1);
