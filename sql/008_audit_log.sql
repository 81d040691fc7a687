-- The admin console's audit log (issue 24): every admin action, written in the same
-- transaction as the change it records. Append-only: no API changes or deletes a row,
-- and the database refuses it too (the trigger below), so a bug or a stolen admin
-- session cannot rewrite history through this service's role.
--
-- No foreign keys: an entry outlives the accounts and videos it names (a deleted
-- user's entry keeps their id and email as they were), and ON DELETE SET NULL would
-- be an UPDATE, which this table refuses.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Who: the admin's id and email at the time; NULL id for the command line
    -- (`videoflix users ...`, run by whoever has the server's configuration).
    actor_id     bigint,
    actor        text        NOT NULL CONSTRAINT audit_log_actor_check CHECK (length(actor) BETWEEN 1 AND 320),
    -- From which address: the client address (clientaddr.py), or 'cli'.
    address      text        NOT NULL CONSTRAINT audit_log_address_check CHECK (length(address) BETWEEN 1 AND 64),
    -- What: a verb from console/audit.py's closed list, e.g. 'user.deactivate'.
    action       text        NOT NULL CONSTRAINT audit_log_action_check CHECK (action ~ '^[a-z]+\.[a-z_]+$'),
    -- On what: 'user', 'video' or 'job', its id (a video id for jobs, a dead
    -- letter's stream id as text), and a label to read (the email, the title).
    target_type  text        NOT NULL CONSTRAINT audit_log_target_type_check CHECK (target_type IN ('user', 'video', 'job')),
    target_id    text        NOT NULL CONSTRAINT audit_log_target_id_check CHECK (length(target_id) BETWEEN 1 AND 64),
    target_label text        NOT NULL DEFAULT '' CONSTRAINT audit_log_target_label_check CHECK (length(target_label) <= 400),
    -- The change itself (fields before and after, what a deletion removed).
    details      jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
