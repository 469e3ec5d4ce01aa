"""Encompass: Operation Encompass notices from police to schools, sealed and on time.

Each subcommand parses its arguments, builds what it needs through :func:`bootstrap`, and
reports failures as one clear line on stderr with exit status 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from encompass.adapters.key_files import KeyFileError
from encompass.config import ConfigError, Settings, load_settings
from encompass.domain.envelope import AckKind


class CommandError(Exception):
    """A command failed for a reason the user can act on; the message is one line."""


def _settings() -> Settings:
    return load_settings()


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give an offset, e.g. {text}+00:00 or {text}Z")
    return value


async def _migrate(args: argparse.Namespace) -> None:
    from encompass.adapters.data_keys import load_or_create_data_keys
    from encompass.adapters.db.migrate import migrate
    from encompass.adapters.key_files import KeyFileError, load_or_create_signing_key
    from encompass.bootstrap import DEFAULT_SIGNING_KEY, data_key_path

    settings = _settings()
    revision = await migrate(settings.database_url)
    print(f"database ({settings.database_kind}) at revision {revision}")
    # The keys too: a deployment runs migrate once before the other processes start, so
    # they all find the same signing key and data key instead of racing to make their own.
    try:
        load_or_create_signing_key(settings.signing_key or DEFAULT_SIGNING_KEY)
        load_or_create_data_keys(data_key_path(settings))
    except KeyFileError as exc:
        raise CommandError(str(exc)) from None


async def _with_container(fn: Callable[[Any], Awaitable[None]]) -> None:
    from encompass.bootstrap import bootstrap
    from encompass.logging import configure_logging

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    container = await bootstrap(settings)
    try:
        await fn(container)
    finally:
        await container.close()


async def _forces_add(args: argparse.Namespace) -> None:
    from encompass.services.access.credentials import CredentialError, add_force

    async def run(container: Any) -> None:
        try:
            issued = await add_force(container.sessions, container.clock, args.code, args.name)
        except CredentialError as exc:
            raise CommandError(str(exc)) from None
        print(f"force {issued.subject_id} registered; keep this token, it is shown once")
        print(f"token: {issued.token}")
        if args.amqp:
            _print_amqp_user(issued.subject_id, container.settings)

    await _with_container(run)


def _print_amqp_user(code: str, settings: Settings) -> None:
    from urllib.parse import unquote, urlsplit

    from encompass.adapters.topology import Topology
    from encompass.services.intake.from_amqp import force_user, rabbitmqctl_commands

    path = urlsplit(settings.amqp_url).path if settings.amqp_url else ""
    vhost = unquote(path[1:]) if len(path) > 1 else "/"
    print(
        f"# the force's RabbitMQ user {force_user(code)}: may publish to the incidents "
        "exchange only; run these once on the broker and give the force the password"
    )
    for command in rabbitmqctl_commands(code, Topology(settings.queue_prefix), vhost=vhost):
        print(command)


async def _admins_add(args: argparse.Namespace) -> None:
    from encompass.services.access.credentials import CredentialError, add_admin, admin_email

    try:
        admin_email(args.email)  # a bad address stops before anything is opened
    except CredentialError as exc:
        raise CommandError(str(exc)) from None

    async def run(container: Any) -> None:
        issued = await add_admin(
            container.sessions, container.clock, args.name, args.area, email=args.email
        )
        print(f"admin {issued.subject_id} registered; keep this token, it is shown once")
        print(f"token: {issued.token}")

    await _with_container(run)


async def _forces_revoke(args: argparse.Namespace) -> None:
    from encompass.services.access.credentials import CredentialError, revoke_force
    from encompass.services.intake.from_amqp import force_user

    async def run(container: Any) -> None:
        try:
            done = await revoke_force(container.sessions, container.clock, args.code)
        except CredentialError as exc:
            raise CommandError(str(exc)) from None
        if done.already:
            print(f"force {done.subject_id} was already revoked ({done.at.isoformat()})")
        else:
            print(
                f"force {done.subject_id} revoked: its token no longer works, and the "
                "service refuses what its RabbitMQ user publishes"
            )
        print(
            f"# to remove its RabbitMQ user too: rabbitmqctl delete_user "
            f"{force_user(done.subject_id)}"
        )

    await _with_container(run)


async def _admins_revoke(args: argparse.Namespace) -> None:
    from encompass.services.access.credentials import CredentialError, revoke_admin

    async def run(container: Any) -> None:
        try:
            done = await revoke_admin(container.sessions, container.clock, args.name)
        except CredentialError as exc:
            raise CommandError(str(exc)) from None
        if done.already:
            print(f"admin {done.subject_id} was already revoked ({done.at.isoformat()})")
        else:
            print(f"admin {done.subject_id} revoked: its token no longer works")

    await _with_container(run)


async def _audit_verify(args: argparse.Namespace) -> None:
    from encompass.services.records.audit import verify_chain

    async def run(container: Any) -> None:
        async with container.sessions() as session:
            report = await verify_chain(session)
        if not report.ok:
            raise CommandError(
                f"audit chain broken at entry {report.broken_at}: "
                f"{report.problem} ({report.entries} entries before it "
                "verify)"
            )
        print(f"audit chain intact: {report.entries} entries (head {report.head})")

    await _with_container(run)


async def _directory_import(args: argparse.Namespace) -> None:
    from encompass.services.directory.importer import DirectoryImportError, import_directory

    files = {k: getattr(args, k) for k in ("settings", "key_adults", "calendars", "pupils")}
    if not any(files.values()):
        raise CommandError(
            "name at least one file: --settings, --key-adults, --calendars or --pupils"
        )

    def progress(label: str, rows: int) -> None:
        print(f"  {label}: {rows:,} rows", file=sys.stderr, flush=True)

    async def run(container: Any) -> None:
        try:
            report = await import_directory(container.sessions, progress=progress, **files)
        except DirectoryImportError as exc:
            raise CommandError(str(exc)) from None
        print(report)

    await _with_container(run)


async def _match(args: argparse.Namespace) -> None:
    from encompass.bootstrap import open_database
    from encompass.services.matching.match_dry_run import DryRunError, explain_model, match_file

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.save_model and not args.explain_model:
        raise CommandError("match: --save-model goes with --explain-model")
    if not args.explain_model and args.children is None:
        raise CommandError("match: give CHILDREN.jsonl (or --explain-model)")
    database = open_database(_settings())
    try:
        if args.explain_model:
            await explain_model(
                database.sessions,
                args.children,
                stdout=sys.stdout,
                progress=progress,
                save=args.save_model,
            )
            return
        report = await match_file(
            database.sessions,
            args.children,
            out=args.out,
            stdout=sys.stdout,
            progress=progress,
        )
    except DryRunError as exc:
        raise CommandError(str(exc)) from None
    finally:
        await database.close()
    print(report.summary(), file=sys.stderr)


async def _next_delivery(args: argparse.Namespace) -> None:
    from encompass.adapters.db.directory_repo import load_setting_calendar
    from encompass.domain.calendar import NoReleaseDay, format_release, release_time

    async def run(container: Any) -> None:
        async with container.sessions() as session:
            calendar = await load_setting_calendar(session, args.setting)
        if calendar is None:
            raise CommandError(f"no setting {args.setting!r} in the directory")
        try:
            print(format_release(release_time(calendar, args.reported_at)))
        except NoReleaseDay as exc:
            raise CommandError(str(exc)) from None

    await _with_container(run)


async def _serve(args: argparse.Namespace) -> None:
    from encompass.server import ServeRefused, serve

    try:
        await serve(_settings())
    except ServeRefused as exc:
        raise CommandError(str(exc)) from None


async def _worker(args: argparse.Namespace) -> None:
    from encompass.workers.main import run_workers

    await run_workers([args.name])


async def _keys_generate(args: argparse.Namespace) -> None:
    from encompass.key_commands import KeyFileError, keys_generate

    try:
        args.out.mkdir(parents=True, exist_ok=True)
        keys_generate(args.out, args.post_quantum)
    except (KeyFileError, OSError) as exc:
        raise CommandError(str(exc)) from None
    kind = "ML-KEM-768 + X25519 hybrid" if args.post_quantum else "X25519"
    print(
        f"{kind} key pair written: {args.out / 'private.pem'} (keep it, mode 0600) and "
        f"{args.out / 'public.pem'} (give it to your local authority)"
    )


async def _open(args: argparse.Namespace) -> None:
    import json

    from encompass.key_commands import KeyFileError, OpenError, open_envelope

    try:
        notice = open_envelope(args.envelope, args.key, args.service_key)
    except (OpenError, KeyFileError) as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(notice, indent=2, ensure_ascii=False))


async def _demo(args: argparse.Namespace) -> None:
    from encompass.demo.run import run_demo

    await run_demo(json_only=args.json, serve=args.serve)


# --- The receiving side: Key Adult credentials, urgent release, the Key Adult's client ---


async def _key_adults_credentials(args: argparse.Namespace) -> None:
    from encompass.services.access.credentials import CredentialError
    from encompass.services.receiving.portal import issue_key_adult_credentials

    async def run(container: Any) -> None:
        try:
            issued = await issue_key_adult_credentials(
                container.sessions, container.clock, args.key_adult_id
            )
        except CredentialError as exc:
            raise CommandError(str(exc)) from None
        print(
            f"Key Adult {issued.key_adult_id}: new credentials (any earlier ones no longer "
            "work); keep them, they are shown once"
        )
        print(f"token: {issued.token}")
        print(f"webhook_secret: {issued.webhook_secret}")

    await _with_container(run)


async def _key_adults_invite(args: argparse.Namespace) -> None:
    from encompass.services.receiving.devices import DeviceError, invite

    async def run(container: Any) -> None:
        try:
            made = await invite(
                container.sessions, container.clock, args.key_adult_id, valid_hours=args.valid_hours
            )
        except DeviceError as exc:
            raise CommandError(str(exc)) from None
        print(
            f"Key Adult {made.key_adult_id}: a one-time link to set up a browser, valid until "
            f"{made.expires_at.isoformat()}; give it to them only, it is shown once"
        )
        print(f"enrol_url: {made.url(container.settings.portal_url)}")

    await _with_container(run)


async def _key_adults_devices(args: argparse.Namespace) -> None:
    from encompass.services.receiving.devices import DeviceError, list_devices

    async def run(container: Any) -> None:
        try:
            found = await list_devices(container.sessions, args.key_adult_id)
        except DeviceError as exc:
            raise CommandError(str(exc)) from None
        for d in found:
            state = "revoked " + d.revoked_at.isoformat() if d.revoked_at else "active"
            if not d.opens_notices and d.revoked_at is None:
                state = "unreadable key"
            added = d.created_at.isoformat() if d.created_at else "-"
            print(f"{d.device_id}\t{state}\tadded {added}\t{d.label}")

    await _with_container(run)


async def _key_adults_revoke_device(args: argparse.Namespace) -> None:
    from encompass.services.receiving.devices import DeviceError, revoke_device

    async def run(container: Any) -> None:
        try:
            done = await revoke_device(container.sessions, container.clock, args.device_id)
        except DeviceError as exc:
            raise CommandError(str(exc)) from None
        assert done.revoked_at is not None
        print(
            f"device {done.device_id} of Key Adult {done.key_adult_id} revoked at "
            f"{done.revoked_at.isoformat()}: it can no longer sign in or acknowledge, and "
            "no notice is sealed to it again"
        )

    await _with_container(run)


async def _purge(args: argparse.Namespace) -> None:
    from encompass.services.records.retention import forget_purged, purge_due

    async def run(container: Any) -> None:
        days = container.settings.retention_days
        verb = "would purge" if args.dry_run else "purged"
        total = 0
        while True:
            batch = await purge_due(
                container.sessions,
                container.clock,
                retention_days=days,
                dry_run=args.dry_run,
                actor="admin:cli",
                vacuum=False,
            )
            for item in batch:
                print(
                    f"{verb} incident {item.incident_id} (force {item.force_id}, closed "
                    f"{item.closed_at.isoformat()})"
                )
            total += len(batch)
            if args.dry_run or not batch:
                break
        if total and not args.dry_run:
            await forget_purged(container.sessions)
        print(
            f"{total} incident(s) {'to purge' if args.dry_run else 'purged'}: closed more "
            f"than {days} day(s) ago (ENCOMPASS_RETENTION_DAYS)"
        )

    await _with_container(run)


async def _release(args: argparse.Namespace) -> None:
    from encompass.services.admin.release_as import release_as_admin
    from encompass.services.scheduling.release_now import ReleaseRefused, release_now

    async def run(container: Any) -> None:
        try:
            if args.admin:
                done = await release_as_admin(
                    container.sessions, container.clock, args.notice_id, args.admin
                )
            else:
                # Scripts may go on without --admin; the audit then names no person.
                done = await release_now(
                    container.sessions, container.clock, args.notice_id, actor="admin:cli"
                )
        except ReleaseRefused as exc:
            raise CommandError(str(exc)) from None
        was = done.was_due_at.isoformat() if done.was_due_at else "no time"
        print(
            f"notice {done.notice_id} released now ({done.deliver_at.isoformat()}); it was "
            f"due at {was}; the dispatcher sends it on its next pass"
        )

    await _with_container(run)


def _portal(args: argparse.Namespace) -> Any:
    from encompass.client import Portal, load_keys, load_pinned
    from encompass.service_pin import pin_path_for

    # Without --service-key the service's key is pinned beside the private key on first
    # use, and a changed one is refused (service_pin.py).
    return Portal(
        args.url,
        args.token,
        load_keys(args.key),
        load_pinned(args.service_key),
        pin=None if args.service_key else pin_path_for(args.key),
    )


def _pinned_note(portal: Any) -> None:
    if portal.pinned_now:
        print(
            f"encompass: pinned the service's key in {portal.pin}; later runs refuse a "
            "different one",
            file=sys.stderr,
        )


async def _inbox(args: argparse.Namespace) -> None:
    import json

    from encompass.client import ClientError, inbox

    def emit(line: dict[str, Any]) -> None:
        print(json.dumps(line, ensure_ascii=False), flush=True)

    try:
        portal = _portal(args)
        await inbox(portal, out_dir=args.out, emit=emit)
    except ClientError as exc:
        raise CommandError(str(exc)) from None
    _pinned_note(portal)


async def _ack(args: argparse.Namespace) -> None:
    import json

    from encompass.client import ClientError, ack

    try:
        portal = _portal(args)
        result = await ack(portal, args.notice_id, kind=AckKind(args.kind), reply=args.reply)
    except ClientError as exc:
        raise CommandError(str(exc)) from None
    _pinned_note(portal)
    print(json.dumps(result, ensure_ascii=False))


def _add_receiving_commands(sub: Any) -> None:
    key_adults = sub.add_parser("key-adults", help="Key Adults").add_subparsers(
        dest="action", required=True
    )
    cred = key_adults.add_parser(
        "credentials",
        help="issue a Key Adult's API token and "
        "webhook secret (printed once; revokes earlier ones)",
    )
    cred.add_argument("key_adult_id", metavar="KEY_ADULT_ID")
    cred.set_defaults(run=_key_adults_credentials)
    inv = key_adults.add_parser(
        "invite", help="print once a one-time enrol_url to set up a browser (audited)"
    )
    inv.add_argument("key_adult_id", metavar="KEY_ADULT_ID")
    inv.add_argument(
        "--valid-hours", type=int, default=72, metavar="H", help="how long the link works"
    )
    inv.set_defaults(run=_key_adults_invite)
    devs = key_adults.add_parser("devices", help="list a Key Adult's devices")
    devs.add_argument("key_adult_id", metavar="KEY_ADULT_ID")
    devs.set_defaults(run=_key_adults_devices)
    rev = key_adults.add_parser("revoke-device", help="revoke a browser device at once (audited)")
    rev.add_argument("device_id", metavar="DEVICE_ID")
    rev.set_defaults(run=_key_adults_revoke_device)

    purge = sub.add_parser(
        "purge",
        help="retention: destroy the data keys of incidents "
        "closed more than ENCOMPASS_RETENTION_DAYS ago (audited)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="only list the incidents that would be purged"
    )
    purge.set_defaults(run=_purge)

    release = sub.add_parser("release", help="release a held (scheduled) notice now, audited")
    release.add_argument("notice_id", metavar="NOTICE_ID")
    release.add_argument(
        "--admin",
        metavar="NAME",
        help="the admin releasing it (name or admin id): the audit log names them, and the "
        "notice must lie in their area; without it the audit says admin:cli",
    )
    release.set_defaults(run=_release)

    def portal_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", required=True, help="the Encompass service's base URL")
        parser.add_argument("--token", required=True, help="the Key Adult's API token")
        parser.add_argument("--key", required=True, type=Path, metavar="PRIVATE.pem")
        parser.add_argument(
            "--service-key",
            type=Path,
            metavar="PUBLIC.pem",
            help="the service's public key (default: fetch it from the "
            "service, pinned on first use in service-key.pem beside "
            "the private key; a changed key is refused)",
        )

    box = sub.add_parser("inbox", help="fetch, verify and open this Key Adult's notices")
    portal_args(box)
    box.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also save each sealed envelope as DIR/NOTICE_ID.json",
    )
    box.set_defaults(run=_inbox)

    acker = sub.add_parser("ack", help="sign and send an acknowledgement")
    acker.add_argument("notice_id", metavar="NOTICE_ID")
    portal_args(acker)
    acker.add_argument(
        "--kind", default=AckKind.RECEIVED.value, choices=[kind.value for kind in AckKind]
    )
    acker.add_argument("--reply", help="a short reply to the force (up to 500 characters)")
    acker.set_defaults(run=_ack)


# --- end of the receiving side ---


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encompass", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the whole job on a simulated night and morning")
    demo.add_argument("--json", action="store_true", help="print only the JSON summary")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="then keep serving: print a set-up link for a Key Adult's browser inbox",
    )
    demo.set_defaults(run=_demo)

    sub.add_parser("serve", help="HTTP API, /metrics, /healthz").set_defaults(run=_serve)

    worker = sub.add_parser("worker", help="run a worker")
    worker.add_argument("name", choices=["matcher", "dispatcher", "intake", "all"])
    worker.set_defaults(run=_worker)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(
        run=_migrate
    )

    forces = sub.add_parser("forces", help="police forces").add_subparsers(
        dest="action", required=True
    )
    add = forces.add_parser("add", help="register a force; prints its token once")
    add.add_argument("code")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--amqp",
        action="store_true",
        help="also print the rabbitmqctl commands that create the force's "
        "RabbitMQ user, allowed to publish incident reports only",
    )
    add.set_defaults(run=_forces_add)
    revoke = forces.add_parser(
        "revoke",
        help="revoke a force's token at once (audited); "
        "'forces add CODE' later reinstates it with a new token",
    )
    revoke.add_argument("code")
    revoke.set_defaults(run=_forces_revoke)

    admins = sub.add_parser("admins", help="admins").add_subparsers(dest="action", required=True)
    add = admins.add_parser("add", help="register an admin; prints the token once")
    add.add_argument("name")
    add.add_argument("--area", required=True, help="local authority code, or 'all'")
    add.add_argument(
        "--email",
        default=None,
        help="where overdue and failed-delivery e-mails reach this admin (optional)",
    )
    add.set_defaults(run=_admins_add)
    revoke = admins.add_parser("revoke", help="revoke an admin's token at once (audited)")
    revoke.add_argument("name", help="the admin's name, or its id when several share it")
    revoke.set_defaults(run=_admins_revoke)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    audit.add_parser(
        "verify", help="walk the hash chain; exit 1 naming the first entry that does not verify"
    ).set_defaults(run=_audit_verify)

    directory = sub.add_parser("directory", help="the directory").add_subparsers(
        dest="action", required=True
    )
    imp = directory.add_parser("import", help="load settings, Key Adults, calendars, pupils")
    for flag in ("--settings", "--key-adults", "--calendars", "--pupils"):
        imp.add_argument(flag, type=Path, metavar="FILE")
    imp.set_defaults(run=_directory_import)

    match = sub.add_parser(
        "match",
        help="dry run: match a JSON-lines file of children "
        "against the imported roster; one JSON line per child",
    )
    match.add_argument("children", type=Path, metavar="CHILDREN.jsonl", nargs="?")
    match.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the lines to FILE (whole or not at all), not stdout",
    )
    match.add_argument(
        "--explain-model",
        action="store_true",
        help="print the matching model fitted on the roster (and the children, "
        "if given): m, u and weight of every level beside the hand-set "
        "ones; nothing is matched",
    )
    match.add_argument(
        "--save-model",
        action="store_true",
        help="with --explain-model and CHILDREN.jsonl: keep the fitted model for the "
        "roster's version; the matcher weighs every level with it (its u refitted after "
        "each pupils import)",
    )
    match.set_defaults(run=_match)

    nd = sub.add_parser("next-delivery", help="when a notice reported then would be released")
    nd.add_argument("--setting", required=True)
    nd.add_argument("--reported-at", required=True, type=_instant)
    nd.set_defaults(run=_next_delivery)

    keys = sub.add_parser("keys", help="Key Adult keys").add_subparsers(
        dest="action", required=True
    )
    gen = keys.add_parser("generate", help="a Key Adult's key pair")
    gen.add_argument("--out", required=True, type=Path, metavar="DIR")
    gen.add_argument(
        "--post-quantum", action="store_true", help="ML-KEM-768 + X25519 hybrid instead of X25519"
    )
    gen.set_defaults(run=_keys_generate)

    opener = sub.add_parser("open", help="open and verify a sealed notice")
    opener.add_argument("envelope", type=Path)
    opener.add_argument("--key", required=True, type=Path, metavar="PRIVATE.pem")
    opener.add_argument(
        "--service-key",
        type=Path,
        metavar="PUBLIC.pem",
        help="the service's public key (default: the one 'encompass inbox' "
        "pinned beside the private key; without either, nothing opens)",
    )
    opener.set_defaults(run=_open)
    _add_receiving_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(args.run(args))
    except (CommandError, ConfigError) as exc:
        print(f"encompass: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, OSError, KeyFileError) as exc:
        # Operational failures (a service that does not answer, a file that cannot be
        # read) are one line for the person at the terminal; the details are in the log.
        print(f"encompass: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
