-- What the deploy pipeline's `migrate gate` decided (refused, or applied with --mark-applied) is told
-- in the request's thread by the bot, which holds the Slack token the pipeline does not: the status
-- last told there. Requests already ended are taken as told.
ALTER TABLE dbops.approval_requests ADD COLUMN told_status text;
UPDATE dbops.approval_requests SET told_status = status WHERE status IN ('applied', 'failed');
