"""A request's Slack message (Block Kit): what the approvers approve, the votes so far, how to vote."""
from __future__ import annotations

from datetime import timezone

from handlers.report import Report

from .. import output
from .book import ApprovalRequest, RequestStatus, text_sha256
from .identity import mention, slack_identity, terminal_claim
from .settings import ApprovalSettings

INLINE_SQL_LIMIT = 2600  # characters (after Slack's escaping) of one SQL file shown in the message itself


def sql_inline(payload: dict) -> bool:
    """Both files short enough (in all and in each line), and neither able to close the code block they are shown in."""
    texts = [t for t in (payload.get("up"), payload.get("down")) if t is not None]
    # A line wider than a phone's code block is attached as a file too: SQL is never rewrapped.
    return all(len(output.escape(t)) <= INLINE_SQL_LIMIT and "```" not in t
               and all(len(line) <= output.MONOSPACE_WIDTH for line in output.escape(t).splitlines())
               for t in texts)


def _not_inline_because(payload: dict) -> str:
    texts = [output.escape(t) for t in (payload.get("up"), payload.get("down")) if t is not None]
    if any(len(t) > INLINE_SQL_LIMIT for t in texts):
        return "too long to show here"
    if any("```" in t for t in texts):
        return "not shown here (it holds a code fence)"
    return f"not shown here (a line is wider than a phone shows, {output.MONOSPACE_WIDTH} characters)"


def sql_files(req: ApprovalRequest) -> list[tuple[str, str]]:
    """(file name, content) of the SQL attached in the request's thread: the whole of it, one click
    away whether or not it is also shown in the message."""
    files = [(f"{req.code}-up.sql", req.payload["up"])]
    if req.payload.get("down") is not None:
        files.append((f"{req.code}-down.sql", req.payload["down"]))
    return files


STATUS_LINE = {
    RequestStatus.PENDING: ":hourglass: *Waiting for approval*",
    RequestStatus.APPROVED: ":white_check_mark: *Approved*: applying next",
    RequestStatus.APPLYING: ":gear: *Applying*",
    RequestStatus.APPLIED: ":white_check_mark: *Applied*",
    RequestStatus.REJECTED: ":no_entry: *Rejected*",
    RequestStatus.EXPIRED: ":alarm_clock: *Expired*",
    RequestStatus.FAILED: ":x: *Apply failed*",
}


def state_line(req: ApprovalRequest, approvals: int) -> str:
    """The first line of the message, the one that changes in place as the request moves."""
    if req.status is RequestStatus.APPROVED and req.apply_by == "pipeline":
        line = ":white_check_mark: *Approved*: the deploy pipeline applies it (`dbops migrate gate`)"
    else:
        line = STATUS_LINE[req.status]
    if req.status is RequestStatus.PENDING:
        line += f" · {approvals} of {req.required_approvals} approvals"
    return line


def _mrkdwn(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def sql_blocks(req: ApprovalRequest) -> list[dict]:
    """What the approvers approve: the full UP and DOWN (or where to read them) and the hashes."""
    payload = req.payload
    if "up" not in payload:
        return []
    blocks = []
    names = ", ".join(f"`{name}`" for name, _ in sql_files(req))
    if sql_inline(payload):
        for label, text in (("UP", payload["up"]), ("DOWN", payload.get("down"))):
            if text is None:
                blocks.append(_mrkdwn(f"*{label} SQL*: none given"))
            else:
                blocks.append(_mrkdwn(f"*{label} SQL*\n```{output.escape(text.rstrip()) or ' '}```"))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
            f"The same SQL is attached in this message's thread as {names}.")}]})
    else:
        sizes = " and ".join(f"{label} {len(text.splitlines())} lines" for label, text in
                             (("UP", payload["up"]), ("DOWN", payload.get("down"))) if text is not None)
        blocks.append(_mrkdwn(f"*UP and DOWN SQL* ({sizes}): {_not_inline_because(payload)}, attached in full in "
                              f"this message's thread as {names}. Read them before approving."))
    down_sha = text_sha256(payload.get("down"))
    blocks.append(_mrkdwn(f"*SHA-256 of UP+DOWN* (what an approval binds): `{req.sha256}`\n"
                          f"UP `{text_sha256(payload['up'])}`\nDOWN " + (f"`{down_sha}`" if down_sha else "none")))
    return blocks


def request_blocks(req: ApprovalRequest, settings: ApprovalSettings, approvers: list[str]) -> list[dict]:
    head = [_mrkdwn(f"{state_line(req, len(approvers))}\nRequest `{req.code}`: {req.kind} `{output.escape(req.name)}` "
                    f"on `{output.escape(req.target)}`"
                    + (f"\n{req.status_detail}" if req.status_detail else ""))]
    if not req.requester_slack:
        head.append(_mrkdwn(f":warning: The requester {mention(req.requested_by)} is *unverified*: no Slack user is "
                            "mapped to that login under [identities] in dbops.toml, so they could approve their own "
                            "request as someone else. It needs one approval more than usual "
                            f"({req.required_approvals})."))
    claim = terminal_claim(req.requested_by)
    if claim:
        head.append(_mrkdwn(f":information_source: {claim}"))
    head += sql_blocks(req)
    body = []
    if req.analysis.get("report"):
        body = output.report_blocks(Report.from_dict(req.analysis["report"]))[1:]  # the header is ours
    attested = mention(req.attested_by, slack_identity(req.attested_by, {}) or (
        req.requester_slack if req.attested_by == req.requested_by else None)) if req.attested_by else "*not attested*"
    votes = ", ".join(f"<@{a}>" for a in approvers) or "none yet"
    footer = (f"Requested by {mention(req.requested_by, req.requester_slack)} · tested on staging: {attested} · "
              f"applied by: {'the bot' if req.apply_by == 'bot' else 'the deploy pipeline'}\n"
              f"Approvals: {votes} ({len(approvers)} of {req.required_approvals} needed) · "
              f"expires {req.expires_at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC")
    if req.status is RequestStatus.PENDING:
        footer += (f"\nTo approve, an approver (not the requester) reacts with :{settings.approve_reaction}: on this "
                   f"message; :{settings.reject_reaction}: rejects.")
    foot = {"type": "context", "elements": [{"type": "mrkdwn", "text": footer[:3000]}]}
    return head + body[:max(0, 49 - len(head))] + [foot]
