-- Read-only roles the bot made and looks after. Roles made with CREATE ROLE are invisible in
-- Render's dashboard, so this is the list. No password is ever stored here.
CREATE TABLE dbops.readonly_roles (
    target        text NOT NULL,
    role_name     text NOT NULL,
    schemas       text[] NOT NULL,
    withheld      text[] NOT NULL DEFAULT '{}',   -- schema.table.column never granted
    created_by    text NOT NULL,
    request_id    bigint,                          -- the approval request it was made under
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz,
    checked_at    timestamptz,
    check_ok      boolean,
    check_summary text,
    PRIMARY KEY (target, role_name)
);
