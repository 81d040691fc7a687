-- Accounts. Emails are stored lower-cased by the application; the unique
-- constraint is the source of truth for "email already registered".
CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email          text        NOT NULL,
    password_hash  text        NOT NULL,
    is_active      boolean     NOT NULL DEFAULT false,
    is_admin       boolean     NOT NULL DEFAULT false,
    -- Bumped on every password change: refresh, reset and stream tokens carry
    -- it, so a changed password invalidates them all.
    token_version  integer     NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    activated_at   timestamptz,
    last_login_at  timestamptz,
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_lowercase CHECK (email = lower(email))
);
