"""Read-only roles for analytics and admin tooling: created, proven read-only, kept in step with
migrations, handed over without leaking (see manage.py)."""
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # at run time each name is imported on first use: see handlers/lazy.py
    from .book import ManagedRole, RoleBook
    from .credentials import Delivery
    from .manage import (
        MissingPrivilege,
        check_role,
        create_role,
        drop_role,
        list_roles,
        plan,
        repair_role,
        rotate_password,
        status_line,
    )
    from .names import check_role_name
    from .settings import ReadonlySettings, WithheldColumn

__all__ = ["Delivery", "ManagedRole", "MissingPrivilege", "ReadonlySettings", "RoleBook", "WithheldColumn",
           "check_role", "check_role_name", "create_role", "drop_role", "list_roles", "plan", "repair_role",
           "rotate_password", "status_line"]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".book": ("ManagedRole", "RoleBook"),
    ".credentials": ("Delivery",),
    ".manage": ("MissingPrivilege", "check_role", "create_role", "drop_role", "list_roles", "plan", "repair_role",
                "rotate_password", "status_line"),
    ".names": ("check_role_name",),
    ".settings": ("ReadonlySettings", "WithheldColumn"),
})
