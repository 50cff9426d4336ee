-- Seals (HMAC-SHA256 under a key derived from DBOPS_APPROVAL_KEY, which the state store never holds):
-- a request's, made when the bot posts it, over what an approval binds; a vote's, made when the bot
-- counts it. Whoever can write the state store cannot then approve a request, or change what one
-- binds, in a way the applier and the pipeline gate accept. NULL: made without a key.
ALTER TABLE dbops.approval_requests ADD COLUMN seal text;
ALTER TABLE dbops.approval_votes ADD COLUMN seal text;
