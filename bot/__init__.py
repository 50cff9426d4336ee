"""dbops: the Slack bot and CLI. `core` is the machinery (registry, jobs, service, scheduler,
approvals, state), `areas` the job areas (each one `Area`), `frontends` the CLI, Slack app and
HTTP server that hand the areas to core."""

__version__ = "0.1.0"
