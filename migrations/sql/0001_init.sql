-- tasker schema, version 1: templates, tasks, steps, edges, transitions, queue, dead letters, leadership.
-- {schema} is replaced by the configured schema name (default tasker) when the file is applied or exported.

CREATE TABLE {schema}.templates (
    namespace   text        NOT NULL,
    name        text        NOT NULL,
    version     text        NOT NULL,
    definition  jsonb       NOT NULL,
    checksum    text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, name, version)
);

CREATE TABLE {schema}.tasks (
    task_id          uuid        PRIMARY KEY,
    namespace        text        NOT NULL,
    name             text        NOT NULL,
    version          text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending',
    context          jsonb       NOT NULL DEFAULT '{}',
    identity_hash    text        NOT NULL,
    idempotency_key  text,
    priority         integer     NOT NULL DEFAULT 0,
    correlation_id   text,
    tags             text[]      NOT NULL DEFAULT '{}',
    -- Counters kept by the hot path so that no completion has to scan the task's steps.
    steps_total      integer     NOT NULL DEFAULT 0,
    steps_unfinished integer     NOT NULL DEFAULT 0, -- not complete, resolved_manually or cancelled
    steps_active     integer     NOT NULL DEFAULT 0, -- enqueued, in_progress or enqueued_for_orchestration
    steps_failed     integer     NOT NULL DEFAULT 0, -- in error
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    CONSTRAINT tasks_template_fk FOREIGN KEY (namespace, name, version)
        REFERENCES {schema}.templates (namespace, name, version),
    CONSTRAINT tasks_identity_unique UNIQUE (namespace, name, identity_hash),
    CONSTRAINT tasks_state_check CHECK (state IN (
        'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
        'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT tasks_counters_check CHECK (
        steps_total >= 0 AND steps_unfinished >= 0 AND steps_active >= 0 AND steps_failed >= 0)
);
CREATE INDEX tasks_state_idx ON {schema}.tasks (state, created_at);
CREATE INDEX tasks_template_created_idx ON {schema}.tasks (namespace, name, created_at);
CREATE INDEX tasks_created_idx ON {schema}.tasks (created_at, task_id);
CREATE INDEX tasks_correlation_idx ON {schema}.tasks (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TABLE {schema}.steps (
    step_id            uuid        PRIMARY KEY,
    task_id            uuid        NOT NULL REFERENCES {schema}.tasks (task_id) ON DELETE CASCADE,
    name               text        NOT NULL,
    template_step      text        NOT NULL, -- the template step this one was made from (differs for batch workers)
    handler            text        NOT NULL,
    step_type          text        NOT NULL DEFAULT 'standard',
    state              text        NOT NULL DEFAULT 'pending',
    attempts           integer     NOT NULL DEFAULT 0,
    max_attempts       integer     NOT NULL DEFAULT 3,
    retryable          boolean     NOT NULL DEFAULT true,
    backoff            text        NOT NULL DEFAULT 'exponential',
    backoff_base_ms    integer     NOT NULL DEFAULT 1000,
    max_backoff_ms     integer     NOT NULL DEFAULT 30000,
    timeout_ms         integer     NOT NULL DEFAULT 30000,
    next_retry_at      timestamptz,
    lease_owner        text,
    lease_expires_at   timestamptz,
    parents_total      integer     NOT NULL DEFAULT 0,
    parents_unfinished integer     NOT NULL DEFAULT 0, -- parents not yet complete or resolved: a join is ready at 0
    inputs             jsonb,      -- per-step inputs (batch cursors, decision outputs)
    result             jsonb,
    last_error         jsonb,
    checkpoint         jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz, -- start of the latest attempt
    completed_at       timestamptz,
    CONSTRAINT steps_name_unique UNIQUE (task_id, name),
    CONSTRAINT steps_state_check CHECK (state IN (
        'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'waiting_for_retry',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT steps_type_check CHECK (step_type IN (
        'standard', 'decision', 'deferred_convergence', 'batchable', 'batch_worker')),
    CONSTRAINT steps_backoff_check CHECK (backoff IN ('exponential', 'linear', 'none')),
    CONSTRAINT steps_attempts_check CHECK (attempts >= 0 AND max_attempts >= 1),
    CONSTRAINT steps_parents_check CHECK (parents_unfinished >= 0 AND parents_unfinished <= parents_total)
);
CREATE INDEX steps_task_idx ON {schema}.steps (task_id, state);
CREATE INDEX steps_retry_idx ON {schema}.steps (next_retry_at) WHERE state = 'waiting_for_retry';
CREATE INDEX steps_lease_idx ON {schema}.steps (lease_expires_at) WHERE state = 'in_progress';

CREATE TABLE {schema}.edges (
    task_id      uuid NOT NULL REFERENCES {schema}.tasks (task_id) ON DELETE CASCADE,
    from_step_id uuid NOT NULL REFERENCES {schema}.steps (step_id) ON DELETE CASCADE,
    to_step_id   uuid NOT NULL REFERENCES {schema}.steps (step_id) ON DELETE CASCADE,
    PRIMARY KEY (from_step_id, to_step_id),
    CONSTRAINT edges_no_self CHECK (from_step_id <> to_step_id)
);
CREATE INDEX edges_to_idx ON {schema}.edges (to_step_id);
CREATE INDEX edges_task_idx ON {schema}.edges (task_id);

CREATE TABLE {schema}.task_transitions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     uuid        NOT NULL REFERENCES {schema}.tasks (task_id) ON DELETE CASCADE,
    from_state  text,
    to_state    text        NOT NULL,
    event       text        NOT NULL,
    metadata    jsonb,
    sort_key    integer     NOT NULL,
    most_recent boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_transitions_sort_unique UNIQUE (task_id, sort_key),
    CONSTRAINT task_transitions_to_check CHECK (to_state IN (
        'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
        'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT task_transitions_from_check CHECK (from_state IS NULL OR from_state IN (
        'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
        'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT task_transitions_changes_state CHECK (from_state IS DISTINCT FROM to_state)
);
-- Exactly one current transition per task.
CREATE UNIQUE INDEX task_transitions_current_idx ON {schema}.task_transitions (task_id) WHERE most_recent;

CREATE TABLE {schema}.step_transitions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    step_id     uuid        NOT NULL REFERENCES {schema}.steps (step_id) ON DELETE CASCADE,
    task_id     uuid        NOT NULL REFERENCES {schema}.tasks (task_id) ON DELETE CASCADE,
    from_state  text,
    to_state    text        NOT NULL,
    event       text        NOT NULL,
    metadata    jsonb,
    sort_key    integer     NOT NULL,
    most_recent boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT step_transitions_sort_unique UNIQUE (step_id, sort_key),
    CONSTRAINT step_transitions_to_check CHECK (to_state IN (
        'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'waiting_for_retry',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT step_transitions_from_check CHECK (from_state IS NULL OR from_state IN (
        'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'waiting_for_retry',
        'complete', 'error', 'cancelled', 'resolved_manually')),
    CONSTRAINT step_transitions_changes_state CHECK (from_state IS DISTINCT FROM to_state)
);
-- Exactly one current transition per step.
CREATE UNIQUE INDEX step_transitions_current_idx ON {schema}.step_transitions (step_id) WHERE most_recent;
CREATE INDEX step_transitions_task_idx ON {schema}.step_transitions (task_id);

-- The PostgreSQL queue (queue/pgqueue): PGMQ's semantics in a plain table. A message is visible when
-- vt <= now(); a read moves vt forward (the visibility timeout); an ack deletes the row.
CREATE TABLE {schema}.queue_messages (
    msg_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name  text        NOT NULL,
    payload     jsonb       NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    vt          timestamptz NOT NULL DEFAULT now(),
    read_ct     integer     NOT NULL DEFAULT 0
);
CREATE INDEX queue_messages_ready_idx ON {schema}.queue_messages (queue_name, vt, msg_id);

-- Dead-letter records: tasks (or steps) that need a person. At most one open record per task.
CREATE TABLE {schema}.dead_letters (
    dlq_id           uuid        PRIMARY KEY,
    task_id          uuid        NOT NULL REFERENCES {schema}.tasks (task_id) ON DELETE CASCADE,
    step_id          uuid        REFERENCES {schema}.steps (step_id) ON DELETE CASCADE,
    reason           text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    task_state       text        NOT NULL,
    snapshot         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    resolved_by      text,
    resolution_notes text,
    CONSTRAINT dead_letters_reason_check CHECK (reason IN (
        'staleness_timeout', 'max_retries_exceeded', 'permanent_failure', 'worker_unavailable', 'manual_dlq')),
    CONSTRAINT dead_letters_status_check CHECK (status IN (
        'pending', 'manually_resolved', 'permanently_failed', 'cancelled'))
);
CREATE UNIQUE INDEX dead_letters_open_idx ON {schema}.dead_letters (task_id) WHERE status = 'pending';
CREATE INDEX dead_letters_status_idx ON {schema}.dead_letters (status, created_at);

-- Leader election for the maintenance services: one row per elected role.
CREATE TABLE {schema}.leaders (
    name       text        PRIMARY KEY,
    leader_id  text        NOT NULL,
    elected_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
