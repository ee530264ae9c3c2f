"""Command-line faces of the domain: `offices load`, `cases export` and the `users` accounts and roles.

No Flask here: the app hands in how to reach the database (`command_groups(database)`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from cases.models import Office
from cases.phones import PhonePolicy
from cases.staff import User
from infra.clock import utcnow
from infra.db import Database

ROLE_CHOICE = click.Choice(["agent", "operator", "head", "action", "admin"])


def command_groups(
    database: Callable[[], Database], phone_policy: Callable[[], PhonePolicy] = PhonePolicy
) -> list[click.Command]:
    """The `offices`, `cases` and `users` groups, each reaching the database through `database()`;
    `phone_policy()` is the service's rules for staff phones (HOTLINE_STAFF_PHONE_COUNTRIES)."""
    return [_offices_group(database), _cases_group(database), _users_group(database, phone_policy)]


def _offices_group(database: Callable[[], Database]) -> click.Group:
    @click.group("offices")
    def offices_group() -> None:
        """Safety Center offices."""

    @offices_group.command("load")
    def offices_load() -> None:
        """Load the central, 77 provincial and 928 district offices from geothai (idempotent)."""
        from cases.offices import load_offices

        with database().session() as session:
            report = load_offices(session)
        click.echo(f"offices: {report.total} in all, {report.created} created, {report.updated} updated")

    return offices_group


def _cases_group(database: Callable[[], Database]) -> click.Group:
    @click.group("cases")
    def cases_group() -> None:
        """Cases."""

    @cases_group.command("export")
    @click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True)
    def cases_export(fmt: str) -> None:
        """Print every case as one JSON array (numbers masked)."""
        from cases.export import iter_case_records

        out = sys.stdout
        # Read-only, in one snapshot: an export of many cases never holds up a caller's webhook.
        with database().read_session() as session:
            out.write("[")
            for i, record in enumerate(iter_case_records(session)):
                out.write(("," if i else "") + "\n  " + json.dumps(record, ensure_ascii=False))
            out.write("\n]\n")

    return cases_group


def _users_group(database: Callable[[], Database], phone_policy: Callable[[], PhonePolicy]) -> click.Group:
    @click.group("users")
    def users_group() -> None:
        """Staff accounts and their roles (the first admin is made here)."""

    for command in (
        _users_create(database, phone_policy),
        _users_password(database),
        _users_phone(database, phone_policy),
        *_users_roles(database),
        _users_list(database),
    ):
        users_group.add_command(command)
    return users_group


def _users_create(database: Callable[[], Database], phone_policy: Callable[[], PhonePolicy]) -> click.Command:
    @click.command("create")
    @click.argument("username")
    @click.option("--name", "display_name", required=True, help="The person's name as staff see it.")
    @click.option("--email", default=None)
    @click.option("--locale", type=click.Choice(["th", "en"]), default="th", show_default=True)
    @click.option(
        "--phone",
        default=None,
        help="The person's own phone (E.164, or Thai national), set without a code as `users phone` does.",
    )
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    def users_create(
        username: str,
        display_name: str,
        email: str | None,
        locale: str,
        phone: str | None,
        password_stdin: bool,
    ) -> None:
        """Create a staff account; give it roles with `users grant`."""
        from cases.accounts import AccountError, create_user
        from cases.phones import check_number, set_by_admin

        password = _read_password(password_stdin)
        with database().session() as session:
            try:
                if phone:
                    check_number(phone, phone_policy())  # refused before the account is made
                user = create_user(session, username, display_name, password, locale=locale, email=email)
                if phone:
                    set_by_admin(session, phone_policy(), user, phone, utcnow())
            except AccountError as exc:
                raise click.ClickException(str(exc)) from exc
            click.echo(f"created user {user.username} (id {user.id})")

    return users_create


def _users_password(database: Callable[[], Database]) -> click.Command:
    @click.command("password")
    @click.argument("username")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    def users_password(username: str, password_stdin: bool) -> None:
        """Set a new password; unlocks the account and ends all its sessions."""
        from cases.accounts import set_password

        password = _read_password(password_stdin)
        _change_account(
            database(),
            username,
            lambda session, user: set_password(session, user, password),
            lambda user: f"password of {user.username} changed; its sessions are ended",
        )

    return users_password


def _users_phone(database: Callable[[], Database], phone_policy: Callable[[], PhonePolicy]) -> click.Command:
    @click.command("phone")
    @click.argument("username")
    @click.argument("number")
    def users_phone(username: str, number: str) -> None:
        """Set the person's own phone without a code (setting up: an audited override); "" removes it.

        The same checks as the console (allowed countries, mobile or fixed lines only); the console's
        "Your phone" page is the normal way, with a code sent to the phone. The bridge rings it, SMS goes
        to it.
        """
        from cases.phones import PhoneError, remove_phone, set_by_admin

        with database().session() as session:
            user = _user(session, username)
            if not number.strip():
                remove_phone(session, user, utcnow(), actor_id=None)
                click.echo(f"phone of {user.username} removed")
                return
            try:
                set_by_admin(session, phone_policy(), user, number, utcnow())
            except PhoneError as exc:
                session.commit()  # the refusal's audit row stays
                raise click.ClickException(str(exc)) from exc
            click.echo(f"phone of {user.username} set without a code (an audited override)")

    return users_phone


def _change_account(
    db: Database, username: str, change: Callable[[Session, User], None], done: Callable[[User], str]
) -> None:
    """Apply `change` to USERNAME's account; an AccountError is the command's error, else echo `done`."""
    from cases.accounts import AccountError

    with db.session() as session:
        user = _user(session, username)
        try:
            change(session, user)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(done(user))


def _users_roles(database: Callable[[], Database]) -> list[click.Command]:
    @click.command("grant")
    @click.argument("username")
    @click.argument("role", type=ROLE_CHOICE)
    @click.argument("office_code")
    def users_grant(username: str, role: str, office_code: str) -> None:
        """Give USERNAME the ROLE at the office OFFICE_CODE (central, 2-digit province, 4-digit district)."""
        _change_role(database(), username, role, office_code, grant=True)

    @click.command("revoke")
    @click.argument("username")
    @click.argument("role", type=ROLE_CHOICE)
    @click.argument("office_code")
    def users_revoke(username: str, role: str, office_code: str) -> None:
        """Take the ROLE at OFFICE_CODE away from USERNAME."""
        _change_role(database(), username, role, office_code, grant=False)

    return [users_grant, users_revoke]


def _change_role(db: Database, username: str, role: str, office_code: str, *, grant: bool) -> None:
    from cases import office_staff, workflow
    from cases.staff import Role

    change = office_staff.grant_role if grant else office_staff.revoke_role
    with db.session() as session:
        user, office = _user(session, username), _office(session, office_code)
        try:
            change(session, office, user, Role(role), actor=None)
        except workflow.WorkflowError as exc:
            raise click.ClickException(str(exc)) from exc
        if grant:
            click.echo(f"{user.username} is now {role} at {office.code} ({office.name_en})")
        else:
            click.echo(f"{user.username} is no longer {role} at {office.code}")


def _users_list(database: Callable[[], Database]) -> click.Command:
    @click.command("list")
    def users_list() -> None:
        """Every account with its roles (role@office) and whether it is locked."""
        from cases.staff import RoleAssignment

        with database().read_session() as session:
            roles: dict[int, list[str]] = {}
            for user_id, role, code in session.execute(
                select(RoleAssignment.user_id, RoleAssignment.role, Office.code)
                .join(Office, Office.id == RoleAssignment.office_id)
                .order_by(Office.code, RoleAssignment.role)
            ):
                roles.setdefault(user_id, []).append(f"{role}@{code}")
            now = utcnow()
            for user in session.scalars(select(User).order_by(User.username)):
                flags = [] if user.active else ["inactive"]
                if user.locked_until and user.locked_until > now:
                    flags.append("locked")
                extra = f" [{', '.join(flags)}]" if flags else ""
                click.echo(
                    f"{user.username}\t{user.display_name}\t{' '.join(roles.get(user.id, [])) or '-'}{extra}"
                )

    return users_list


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("password", hide_input=True, confirmation_prompt=True)
    return value


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    return user


def _office(session: Session, code: str) -> Office:
    office = session.scalar(select(Office).where(Office.code == code.strip()))
    if office is None:
        raise click.ClickException(f"no office with code {code!r} (run `flask --app app offices load`?)")
    return office
