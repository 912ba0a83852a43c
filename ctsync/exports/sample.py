"""Write a realistic CleverTap legacy event export (and a profile export) for demos and tests.

The files look like the ones CleverTap writes to S3: gzip JSON lines, one file series per
event name, named ``<request id>-<run ts>-<event name>-<yyyymmdd>-<file index>-<db id>.json.gz``,
optionally starting with a bare event-name line. Users go through realistic lives: an
install, sessions, campaigns, purchases with items, UTM visits, app upgrades, some log in
part-way (anonymous before), some uninstall. Both spellings of CleverTap's system properties
appear (``CT App Version`` in some files, ``ct_app_version`` in others).

Everything derives from ``seed``: the same arguments always write the same bytes.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from ctsync.errors import CtsyncError
from ctsync.exports.files import file_safe_name

MAX_BUFFERED_BYTES = 256 * 1024 * 1024
"""Lines held in memory across all file series before each series writes a chunk file."""

ACCOUNT_ID = "100000000"
REQUEST_ID = "1700000001"
DB_ID = "3"

# (event name, relative weight among session events)
_SESSION_EVENTS: tuple[tuple[str, int], ...] = (
    ("App Launched", 40),
    ("Product Viewed", 18),
    ("Notification Sent", 10),
    ("Push Impressions", 8),
    ("Notification Viewed", 6),
    ("Notification Clicked", 5),
    ("Charged", 5),
    ("UTM Visited", 3),
    ("Added To Cart", 5),
)
_CAMPAIGNS = (
    ("1710230000_20240312", "Spring Sale", "Push"),
    ("1710500001", "Win-back", "Push"),
    ("1711000002_1711000002", "Cart Reminder", "Push"),
    ("1712000003", "Monthly Newsletter", "Email"),
    ("1713000004", "Flash Deal", "SMS"),
)
_UTM = (
    ("newsletter", "email", "spring_sale"),
    ("google", "cpc", "brand_search"),
    ("facebook", "social", "summer_launch"),
    ("partner_blog", "referral", "review_program"),
)
_PRODUCTS = (
    ("books", "The millionaire next door", 12.5),
    ("books", "Achieving inner zen", 9.99),
    ("electronics", "Casio Watch", 59.99),
    ("electronics", "USB-C Cable", 7.0),
    ("apparel", "Rain Jacket", 89.0),
    ("grocery", "Coffee Beans 1kg", 18.25),
)
_APP_VERSIONS = ("4.0.0", "4.1.0", "4.2.0", "4.3.1")
_DEVICES = (
    ("Android", "samsung", "SM-G991B", "14", 420),
    ("Android", "Google", "Pixel 8", "15", 440),
    ("iOS", "Apple", "iPhone15,2", "17.3", 460),
    ("iOS", "Apple", "iPhone13,4", "16.6", 460),
    ("Web", None, None, None, None),
)
_FIRST_NAMES = ("Asha", "Ben", "Chen", "Dana", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jon")
_LAST_NAMES = ("Rao", "Smith", "Li", "Cohen", "Kaya", "Haddad", "Okafor", "Sato", "Silva", "Berg")


@dataclass
class _User:
    index: int
    object_id: str
    identity: str | None
    email: str | None
    phone: str | None
    name: str | None
    platform: str
    make: str | None
    model: str | None
    os_version: str | None
    dpi: int | None
    installed_at: datetime
    identified_at: datetime | None
    uninstalled_at: datetime | None
    last_active_at: datetime
    app_version_index: int
    upgrade_at: datetime | None
    activity: float
    push_token: str | None = None
    utm: tuple[str, str, str] | None = None


@dataclass
class SampleSummary:
    """What was written: files and event counts per event name."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    events_by_name: dict[str, int] = field(default_factory=dict)
    profile_file: Path | None = None
    users: int = 0

    @property
    def events(self) -> int:
        return sum(self.events_by_name.values())


def write_sample_export(
    out_dir: Path | str,
    *,
    events: int = 20_000,
    users: int = 1_000,
    seed: int = 7,
    end: datetime | None = None,
    days: int = 45,
    timezone: str = "UTC",
    max_records_per_file: int = 100_000,
    header_lines: bool = True,
    compress: bool = True,
    profiles: bool = True,
    progress: Callable[[int], None] | None = None,
    request_id: str = REQUEST_ID,
) -> SampleSummary:
    """Write about ``events`` events for ``users`` users over the ``days`` days before ``end``.

    ``ts`` values are wall-clock times in ``timezone`` (the CleverTap project's timezone).
    ``progress`` is called with the number of events written since the previous call.
    """
    if events < 1 or users < 1:
        raise CtsyncError("--events and --users must be at least 1")
    if days < 1:
        raise CtsyncError("--days must be at least 1")
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError) as exc:
        raise CtsyncError(f"unknown timezone {timezone!r}; use an IANA name such as Asia/Kolkata") from exc
    end_utc = (end or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    start_utc = end_utc - timedelta(days=days)
    rng = random.Random(seed)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    people = [_make_user(rng, i, start_utc, end_utc) for i in range(users)]
    summary = SampleSummary(directory=directory, users=users)
    run_ts = str(int(end_utc.timestamp()))

    records = _generate(rng, people, events, start_utc, end_utc)
    writers: dict[tuple[str, str], _SeriesWriter] = {}
    pending_progress = 0
    buffered = 0
    for name, at, record in records:
        day = at.astimezone(zone).strftime("%Y%m%d")
        record["ts"] = int(at.astimezone(zone).strftime("%Y%m%d%H%M%S"))
        key = (name, day)
        writer = writers.get(key)
        if writer is None:
            # Spaced property spellings in files of odd days, snake spellings in the others:
            # both occur in real exports and must land in the same columns.
            writer = _SeriesWriter(
                directory,
                request_id,
                run_ts,
                name,
                day,
                max_records_per_file,
                header_lines,
                compress,
                snake_spelling=int(day) % 2 == 0,
            )
            writers[key] = writer
        buffered += writer.write(record)
        if buffered > MAX_BUFFERED_BYTES:  # bounded memory: every series writes what it holds as a chunk
            for open_writer in writers.values():
                open_writer.flush()
            buffered = 0
        summary.events_by_name[name] = summary.events_by_name.get(name, 0) + 1
        pending_progress += 1
        if progress is not None and pending_progress >= 10_000:
            progress(pending_progress)
            pending_progress = 0
    for writer in writers.values():
        summary.files.extend(writer.close())
    if progress is not None and pending_progress:
        progress(pending_progress)
    summary.files.sort()
    if profiles:
        summary.profile_file = _write_profiles(directory, people, request_id, run_ts, compress)
    return summary


def _make_user(rng: random.Random, index: int, start: datetime, end: datetime) -> _User:
    span = (end - start).total_seconds()
    # A third of the users were installed before the window; the rest during it.
    if rng.random() < 0.33:
        installed_at = start - timedelta(seconds=rng.uniform(0, span))
    else:
        installed_at = start + timedelta(seconds=rng.uniform(0, span * 0.9))
    platform, make, model, os_version, dpi = rng.choice(_DEVICES)
    known = rng.random() < 0.75
    identity = f"u-{index:07d}" if known else None
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    email = f"{first.lower()}.{last.lower()}{index}@example.com" if known and rng.random() < 0.8 else None
    phone = f"+1415{index:07d}" if known and rng.random() < 0.4 else None
    if known and rng.random() < 0.1:
        identity = None  # known by email or phone only: the identifier priority falls back
        if email is None and phone is None:
            email = f"{first.lower()}{index}@example.com"
    identified_at = None
    if known:
        # Most log in at install; some browse anonymously first.
        delay = 0.0 if rng.random() < 0.7 else rng.uniform(0, span / 3)
        identified_at = installed_at + timedelta(seconds=delay)
    uninstalled_at = None
    if rng.random() < 0.08:
        uninstalled_at = installed_at + timedelta(seconds=rng.uniform(span * 0.05, span))
        uninstalled_at = min(uninstalled_at, end - timedelta(seconds=60))
    # Dormant users stop being active well before the end of the window.
    last_active_at = end
    if rng.random() < 0.12:
        last_active_at = end - timedelta(days=rng.uniform(15, 40))
    if uninstalled_at is not None:
        last_active_at = min(last_active_at, uninstalled_at - timedelta(seconds=30))
    last_active_at = max(last_active_at, installed_at + timedelta(seconds=1))
    upgrade_at = installed_at + timedelta(seconds=rng.uniform(0, span)) if rng.random() < 0.3 else None
    return _User(
        index=index,
        object_id=f"__g{rng.getrandbits(64):016x}",
        identity=identity,
        email=email,
        phone=phone,
        name=f"{first} {last}" if known else None,
        platform=platform,
        make=make,
        model=model,
        os_version=os_version,
        dpi=dpi,
        installed_at=installed_at,
        identified_at=identified_at,
        uninstalled_at=uninstalled_at,
        last_active_at=last_active_at,
        app_version_index=rng.randrange(len(_APP_VERSIONS) - 1),
        upgrade_at=upgrade_at,
        activity=rng.paretovariate(1.5),
        push_token=(
            f"fcm:{rng.getrandbits(96):024x}"
            if platform == "Android"
            else f"apns:{rng.getrandbits(96):024x}"
            if platform == "iOS"
            else None
        ),
        utm=rng.choice(_UTM) if rng.random() < 0.25 else None,
    )


def _generate(
    rng: random.Random, people: list[_User], events: int, window_start: datetime, end: datetime
) -> Iterator[tuple[str, datetime, dict[str, Any]]]:
    # Lifecycle events first: App Installed inside the window, App Uninstalled, upgrades.
    budget = events
    for user in people:
        if budget <= 0:
            return
        if user.installed_at >= window_start and user.installed_at <= end and budget > 0:
            budget -= 1
            yield (
                "App Installed",
                user.installed_at,
                _record(rng, user, "App Installed", user.installed_at),
            )
        if user.uninstalled_at is not None and user.uninstalled_at >= window_start and budget > 0:
            budget -= 1
            yield (
                "App Uninstalled",
                user.uninstalled_at,
                _record(rng, user, "App Uninstalled", user.uninstalled_at),
            )
        upgrade = user.upgrade_at
        if upgrade is not None and window_start <= upgrade < user.last_active_at and budget > 0:
            budget -= 1
            yield "App Version Changed", upgrade, _record(rng, user, "App Version Changed", upgrade)
    weights = [user.activity for user in people]
    names = [name for name, _ in _SESSION_EVENTS]
    name_weights = [weight for _, weight in _SESSION_EVENTS]
    chunk = 4096
    while budget > 0:
        size = min(chunk, budget)
        chosen = rng.choices(people, weights=weights, k=size)
        kinds = rng.choices(names, weights=name_weights, k=size)
        for user, name in zip(chosen, kinds, strict=True):
            start = max(user.installed_at, window_start)
            stop = max(user.last_active_at, start + timedelta(seconds=1))
            at = start + timedelta(seconds=rng.uniform(0, max((stop - start).total_seconds(), 1)))
            at = at.replace(microsecond=0)
            yield name, at, _record(rng, user, name, at)
        budget -= size


def _record(rng: random.Random, user: _User, name: str, at: datetime) -> dict[str, Any]:
    identified = user.identified_at is not None and at >= user.identified_at
    profile: dict[str, Any] = {"objectId": user.object_id, "platform": user.platform}
    if identified:
        identity = user.identity or user.email or user.phone
        profile["identity"] = identity
        profile["all_identities"] = [x for x in (user.identity, user.email, user.phone) if x]
        if user.name:
            profile["name"] = user.name
        if user.email:
            profile["email"] = user.email
        if user.phone:
            profile["phone"] = user.phone
    if user.push_token and name != "App Uninstalled":
        profile["push_token"] = user.push_token
    version_index = user.app_version_index
    if user.upgrade_at is not None and at >= user.upgrade_at:
        version_index += 1
    app_version = _APP_VERSIONS[version_index]
    device: dict[str, Any] = {}
    if user.platform == "Web":
        device["browser"] = "Chrome"
    else:
        device = {
            "make": user.make,
            "model": user.model,
            "appVersion": app_version,
            "sdkVersion": 60102 if user.platform == "Android" else 70001,
            "osVersion": user.os_version,
            "dpi": user.dpi,
            "dimensions": {"width": 1080, "height": 2400, "unit": "px"},
        }
    source = "Web" if user.platform == "Web" else "Mobile"
    props: dict[str, Any] = {"CT Source": source, "CT App Version": app_version}
    record: dict[str, Any] = {"ts": 0, "eventName": name, "profile": profile, "deviceInfo": device}
    if name == "App Launched":
        props.update(
            {
                "CT SDK Version": device.get("sdkVersion", 10900),
                "CT OS Version": user.os_version,
                "CT Network Carrier": rng.choice(("Vodafone", "Jio", "T-Mobile", "Airtel")),
                "CT Network Type": rng.choice(("4G", "5G", "WiFi")),
                "CT Connected To WiFi": rng.random() < 0.4,
                "CT Latitude": round(rng.uniform(8, 35), 4),
                "CT Longitude": round(rng.uniform(68, 90), 4),
                "CT Session Id": int(at.timestamp()),
                "Model": user.model,
            }
        )
    elif name == "App Installed":
        props.update(
            {
                "CT Latitude": round(rng.uniform(8, 35), 4),
                "CT Longitude": round(rng.uniform(68, 90), 4),
            }
        )
    elif name == "App Uninstalled":
        props = {
            "CT Source": "System",
            "clevertapId": user.object_id,
            "token": user.push_token or "",
            "source": "FCM" if user.platform == "Android" else "API",
        }
        record["deviceInfo"] = {}
    elif name == "App Version Changed":
        props["CT App Version Prev"] = _APP_VERSIONS[user.app_version_index]
    elif name in (
        "Notification Sent",
        "Notification Viewed",
        "Notification Clicked",
        "Push Impressions",
    ):
        campaign_id, campaign_name, campaign_type = rng.choice(_CAMPAIGNS)
        props.update(
            {
                "Campaign id": campaign_id,
                "Campaign name": campaign_name,
                "Campaign type": campaign_type,
                "Campaign labels": rng.choice(("promo", "retention", "transactional")),
                "Variant": rng.choice(("Variant A", "Variant B")),
            }
        )
        if name != "Notification Sent":
            props.update(
                {
                    "wzrk_id": campaign_id,
                    "wzrk_pivot": rng.choice(("wzrk_default", "variant_b")),
                    "wzrk_acct_id": "TEST-ABC-123",
                    "wzrk_pn": "true",
                    "wzrk_rnv": "true",
                    "wzrk_dt": "FIREBASE" if user.platform == "Android" else "APNS",
                    "wzrk_ttl": int(at.timestamp()) + 2419200,
                    "wzrk_ttl_s": 2419200,
                    "wzrk_dl": "myapp://sale",
                }
            )
        if name == "Notification Clicked":
            props["wzrk_c2a"] = rng.choice(("shop_now", "later", "__dismiss__"))
            props["wzrk_push_amp"] = False
    elif name == "Charged":
        picked = [(item, rng.randint(1, 3)) for item in rng.sample(_PRODUCTS, rng.randint(1, 3))]
        items = [
            {"Category": category, "Product name": product, "Price": price, "Quantity": quantity}
            for (category, product, price), quantity in picked
        ]
        amount = round(sum(price * quantity for (_category, _product, price), quantity in picked), 2)
        props.update(
            {
                "Amount": amount,
                "Currency": "USD",
                "Payment mode": rng.choice(("Credit Card", "UPI", "Wallet")),
                "Charged ID": f"ord-{rng.getrandbits(40):010x}",
                "Delivery By": f"$D_{int(at.timestamp()) + 3 * 86400}",
                "Items": items,
            }
        )
    elif name == "UTM Visited":
        utm_source, utm_medium, utm_campaign = user.utm or rng.choice(_UTM)
        props.update(
            {
                "Campaign id": "1709900000",
                "Campaign type": "Email",
                "Install": rng.choice(("Y", "N")),
            }
        )
        record["sessionProps"] = {
            "utm_source": utm_source,
            "utm_medium": utm_medium,
            "utm_campaign": utm_campaign,
        }
    elif name == "Product Viewed":
        category, product, price = rng.choice(_PRODUCTS)
        props.update(
            {
                "Product name": product,
                "Category": category,
                "Price": price,
                "Discount": {
                    "Code": rng.choice(("NONE", "SPRING10")),
                    "Percent": rng.choice((0, 10)),
                },
            }
        )
    elif name == "Added To Cart":
        category, product, price = rng.choice(_PRODUCTS)
        props.update(
            {
                "Product name": product,
                "Category": category,
                "Price": price,
                "Quantity": rng.randint(1, 4),
            }
        )
    record["eventProps"] = props
    return record


_SNAKE_SPELLINGS = {
    "CT App Version": "ct_app_version",
    "CT SDK Version": "ct_sdk_version",
    "CT Source": "ct_source",
    "CT Latitude": "ct_latitude",
    "CT Longitude": "ct_longitude",
    "CT Connected To WiFi": "ct_connected_to_wifi",
}


class _SeriesWriter:
    """One file series (event name, day), split into chunks of ``max_records`` lines."""

    def __init__(
        self,
        directory: Path,
        request_id: str,
        run_ts: str,
        event_name: str,
        day: str,
        max_records: int,
        header_line: bool,
        compress: bool,
        *,
        snake_spelling: bool,
    ) -> None:
        self._directory = directory
        self._request_id = request_id
        self._run_ts = run_ts
        self._event_name = event_name
        self._day = day
        self._max_records = max_records
        self._header_line = header_line
        self._compress = compress
        self._snake_spelling = snake_spelling
        self._buffer: list[bytes] = []
        self._index = 0
        self._written: list[Path] = []

    def write(self, record: dict[str, Any]) -> int:
        """Buffer one record; returns its size in bytes."""
        if self._snake_spelling:
            props = record["eventProps"]
            for spaced, snake in _SNAKE_SPELLINGS.items():
                if spaced in props:
                    props[snake] = props.pop(spaced)
        line = orjson.dumps(record)
        self._buffer.append(line)
        if len(self._buffer) >= self._max_records:
            self.flush()
        return len(line)

    def close(self) -> list[Path]:
        self.flush()
        return self._written

    def flush(self) -> None:
        """Write what is buffered as the series' next chunk file (nothing when empty)."""
        if not self._buffer:
            return
        # CleverTap replaces whitespace and slashes in file names with '-'.
        safe_name = file_safe_name(self._event_name)
        suffix = ".json.gz" if self._compress else ".json"
        path = self._directory / (
            f"{self._request_id}-{self._run_ts}-{safe_name}-{self._day}-{self._index}-{DB_ID}{suffix}"
        )
        lines = b"\n".join(self._buffer) + b"\n"
        if self._header_line:
            lines = self._event_name.encode("utf-8") + b"\n" + lines
        if self._compress:
            path.write_bytes(gzip.compress(lines, compresslevel=1, mtime=0))
        else:
            path.write_bytes(lines)
        self._written.append(path)
        self._buffer = []
        self._index += 1


def _write_profiles(directory: Path, people: list[_User], request_id: str, run_ts: str, compress: bool) -> Path:
    """A legacy profile export: flat JSON lines, one per user, keys dropped when missing."""
    lines: list[bytes] = []
    for user in people:
        row: dict[str, Any] = {"clevertapId": user.object_id}
        identity = user.identity or user.email or user.phone
        if identity and user.identified_at is not None:
            row["identity"] = identity
            row["all_identities"] = [x for x in (user.identity, user.email, user.phone) if x]
        if user.push_token:
            row["device"] = {"token": user.push_token}
        row.update(
            {
                "MSG-push": user.push_token is not None,
                "MSG-email": user.email is not None,
                "MSG-sms": user.phone is not None and user.index % 3 == 0,
                "MSG-whatsapp": user.index % 5 == 0,
            }
        )
        if user.name:
            row["Name"] = user.name
        if user.email:
            row["Email"] = user.email
        if user.phone:
            row["Phone"] = user.phone
        if user.identified_at is not None:
            row["Gender"] = "F" if user.index % 2 else "M"
            birth = date(1970 + user.index % 35, 1 + user.index % 12, 1 + user.index % 28)
            row["DOB"] = f"$D_{int(datetime(birth.year, birth.month, birth.day, tzinfo=UTC).timestamp())}"
            row["Customer Type"] = ("Gold", "Silver", "Bronze")[user.index % 3]
            if user.index % 4 == 0:
                row["Photo"] = f"https://cdn.example.com/avatars/{user.index}.png"
        lines.append(orjson.dumps(row))
    suffix = ".gz" if compress else ""
    path = directory / f"{ACCOUNT_ID}-{request_id}-{run_ts}-{DB_ID}-json{suffix}"
    body = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(body, compresslevel=1, mtime=0) if compress else body)
    return path
