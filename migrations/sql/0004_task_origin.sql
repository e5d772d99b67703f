-- Task origin: who asked for a task, from which system, and why, as Tasker Core's task request
-- carries them (initiator, source_system, reason). NULL when the request left them empty.
ALTER TABLE {schema}.tasks
    ADD COLUMN initiator     text,
    ADD COLUMN source_system text,
    ADD COLUMN reason        text;
