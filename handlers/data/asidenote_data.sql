-- Deterministic generated rows; :scale multiplies every count (1 gives about 200,000 rows).
SELECT setseed(0.42);
INSERT INTO "Users" ("Email", "Username", "PasswordHash", "DisplayName", "EmailConfirmed", "CreatedAt", "UpdatedAt")
SELECT 'user' || g || '@example.com', 'user_' || g, md5('pw' || g), 'User ' || g, g % 7 <> 0,
       timestamptz '2024-01-01' + g * interval '17 minutes', timestamptz '2024-06-01' + g * interval '11 minutes'
FROM generate_series(1::bigint, 5000 * :scale) g;

INSERT INTO "Boards" ("UserId", "Name", "Color", "CreatedAt")
SELECT 1 + (g * 7919) % (5000 * :scale), 'Board ' || g, (ARRAY['red','blue','green',NULL])[(1 + g % 4)::int],
       timestamptz '2024-02-01' + g * interval '9 minutes'
FROM generate_series(1::bigint, 10000 * :scale) g;

INSERT INTO "Notes" ("UserId", "BoardId", "Title", "Content", "IsPinned", "CreatedAt", "UpdatedAt")
SELECT 1 + (g * 104729) % (5000 * :scale),
       CASE WHEN g % 5 = 0 THEN NULL ELSE 1 + (g * 31) % (10000 * :scale) END,
       'Note ' || g, repeat('lorem ipsum ', (1 + g % 20)::int) || g, g % 50 = 0,
       timestamptz '2024-03-01' + g * interval '3 minutes', timestamptz '2024-03-01' + g * interval '4 minutes'
FROM generate_series(1::bigint, 100000 * :scale) g;

INSERT INTO "IndexCards" ("UserId", "BoardId", "Front", "Back", "Position", "CreatedAt")
SELECT 1 + (g * 613) % (5000 * :scale), 1 + (g * 17) % (10000 * :scale), 'Q' || g, 'A' || g, g % 40,
       timestamptz '2024-04-01' + g * interval '5 minutes'
FROM generate_series(1::bigint, 30000 * :scale) g;

INSERT INTO "Projects" ("OwnerId", "Name", "Status", "Budget", "DueDate", "CreatedAt")
SELECT 1 + (g * 389) % (5000 * :scale), 'Project ' || g, g % 4, round((g * 37.5) % 100000, 2),
       date '2025-01-01' + (g % 365)::int, timestamptz '2024-05-01' + g * interval '1 hour'
FROM generate_series(1::bigint, 5000 * :scale) g;

INSERT INTO "RefreshTokens" ("UserId", "TokenHash", "ExpiresAt", "RevokedAt", "CreatedAt")
SELECT 1 + (g * 59) % (5000 * :scale), encode(sha256(('rt' || g)::bytea), 'hex'),
       timestamptz '2025-01-01' + g * interval '10 minutes',
       CASE WHEN g % 3 = 0 THEN timestamptz '2025-01-01' + g * interval '7 minutes' END,
       timestamptz '2024-12-01' + g * interval '10 minutes'
FROM generate_series(1::bigint, 10000 * :scale) g;

INSERT INTO "EmailVerificationTokens" ("UserId", "TokenHash", "ExpiresAt", "UsedAt")
SELECT 1 + (g * 97) % (5000 * :scale), encode(sha256(('ev' || g)::bytea), 'hex'),
       timestamptz '2025-01-01' + g * interval '1 hour',
       CASE WHEN g % 2 = 0 THEN timestamptz '2025-01-01' + g * interval '30 minutes' END
FROM generate_series(1::bigint, 3000 * :scale) g;

INSERT INTO "ExternalLogins" ("UserId", "Provider", "ProviderUserId", "CreatedAt")
SELECT 1 + (g * 13) % (5000 * :scale), (ARRAY['google','github','apple'])[(1 + g % 3)::int], 'ext-' || g,
       timestamptz '2024-07-01' + g * interval '2 hours'
FROM generate_series(1::bigint, 3000 * :scale) g;

INSERT INTO "AuditLogs" ("UserId", "Timestamp", "ActionType", "IpAddress", "Details")
SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE 1 + (g * 7) % (5000 * :scale) END,
       timestamptz '2025-01-01' + g * interval '90 seconds',
       (ARRAY['login','logout','note.create','note.update','note.delete','board.create'])[(1 + g % 6)::int],
       ('10.0.' || (g % 250) || '.' || (g % 200))::inet,
       jsonb_build_object('n', g, 'agent', 'web')
FROM generate_series(1::bigint, 40000 * :scale) g;
ANALYZE;
