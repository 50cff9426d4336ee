"""The Slack front end: the Bolt app (`app.build_app`) with the `/db` command (`commands`, behind the
access checks in `access`), the reaction events (`events`) and the areas' forms (`views`)."""
