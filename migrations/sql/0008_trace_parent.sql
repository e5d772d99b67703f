-- Trace context (version 8): the W3C traceparent of the span that created a task, so that every
-- step attempt, in any process, is a span of the task's one trace. NULL when the creating call had
-- no sampled span (no TracerProvider, or none in its context). The archive copy follows the table.
ALTER TABLE {schema}.tasks ADD COLUMN trace_parent text;
ALTER TABLE {schema}.archive_tasks ADD COLUMN trace_parent text;
