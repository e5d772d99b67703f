-- Durations as bigint milliseconds (version 5): integer ends at 2^31-1 ms, about 24.8 days,
-- shorter than a step may wait (a 30-day approval step). The library accepts timeouts and
-- backoffs up to 365 days (tasker.StepDurationMax). Changing the type rewrites the steps table
-- under an exclusive lock; on a large table, apply it in a quiet moment.
ALTER TABLE {schema}.steps
    ALTER COLUMN backoff_base_ms TYPE bigint,
    ALTER COLUMN max_backoff_ms  TYPE bigint,
    ALTER COLUMN timeout_ms      TYPE bigint;
