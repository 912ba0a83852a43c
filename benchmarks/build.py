"""dbt build benchmark: the whole project on a warehouse of N events and M users.

    python benchmarks/build.py [--events 10000000] [--users 1000000] [--repeat 1]

The warehouse is generated directly with DuckDB SQL in the loader's layout (one table per
event with standard, context and property columns, ``tracks`` as a view over them,
``identifies`` and ``users`` from profiles) rather than through the loader, so preparing
10M events takes seconds; it is cached under ``benchmarks/data/`` (git-ignored). Each
measurement runs ``dbt build --full-refresh`` (everything rebuilt, as on a first run) on a
fresh copy, then ``dbt build`` again on the same copy (the incremental models only take
new rows), each in its own process, with as_of pinned. Target: the full build in <= 60 s
on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
DATA = ROOT / "data"
END = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = 45
SCHEMA = "clevertap_prod"
TARGET_SECONDS = 60.0

# (event name, table, share of the session events), as in ctsync.exports.sample.
SESSION_EVENTS = (
    ("App Launched", "app_launched", 40),
    ("Product Viewed", "product_viewed", 18),
    ("Notification Sent", "notification_sent", 10),
    ("Push Impressions", "push_impressions", 8),
    ("Notification Viewed", "notification_viewed", 6),
    ("Notification Clicked", "notification_clicked", 5),
    ("Charged", "charged", 5),
    ("UTM Visited", "utm_visited", 3),
    ("Added To Cart", "added_to_cart", 5),
)

STANDARD = """
    id varchar, user_id varchar, anonymous_id varchar, event varchar, event_text varchar,
    "timestamp" timestamp with time zone, original_timestamp timestamp with time zone,
    received_at timestamp with time zone, uuid_ts timestamp with time zone,
    context_traits_platform varchar, context_device_token varchar,
    context_traits_identity varchar, context_traits_name varchar,
    context_traits_object_id varchar, context_traits_all_identities varchar,
    context_traits_phone varchar, context_traits_email varchar,
    context_device_manufacturer varchar, context_device_model varchar,
    context_app_version varchar, context_device_sdk_version bigint,
    context_os_version varchar, context_device_browser varchar,
    context_campaign_source varchar, context_campaign_medium varchar, context_campaign_name varchar
"""

PROPERTIES = {
    "app_launched": """ct_app_version varchar, ct_source varchar, ct_sdk_version bigint, ct_os_version varchar,
        ct_network_carrier varchar, ct_network_type varchar, ct_connected_to_wifi boolean,
        ct_latitude double, ct_longitude double, ct_session_id bigint, model varchar""",
    "app_installed": "ct_app_version varchar, ct_source varchar, ct_latitude double, ct_longitude double",
    "app_uninstalled": "ct_source varchar, clevertap_id varchar, token varchar, source varchar",
    "app_version_changed": "ct_app_version varchar, ct_app_version_prev varchar, ct_source varchar",
    "charged": """amount double, currency varchar, payment_mode varchar, charged_id varchar,
        delivery_by varchar, items varchar, ct_app_version varchar, ct_source varchar""",
    "notification_sent": """campaign_id varchar, campaign_name varchar, campaign_type varchar,
        campaign_labels varchar, variant varchar, ct_source varchar, ct_app_version varchar""",
    "notification_viewed": """campaign_id varchar, campaign_name varchar, campaign_type varchar,
        campaign_labels varchar, variant varchar, wzrk_id varchar, wzrk_pivot varchar, wzrk_dl varchar,
        ct_source varchar, ct_app_version varchar""",
    "push_impressions": """campaign_id varchar, campaign_name varchar, campaign_type varchar,
        campaign_labels varchar, variant varchar, wzrk_id varchar, wzrk_pivot varchar, wzrk_dl varchar,
        ct_source varchar, ct_app_version varchar""",
    "notification_clicked": """campaign_id varchar, campaign_name varchar, campaign_type varchar,
        campaign_labels varchar, variant varchar, wzrk_id varchar, wzrk_pivot varchar, wzrk_dl varchar,
        wzrk_c2a varchar, ct_source varchar, ct_app_version varchar""",
    "utm_visited": """campaign_id varchar, campaign_type varchar, install varchar, ct_source varchar,
        ct_app_version varchar""",
    "product_viewed": """product_name varchar, category varchar, price double, discount_code varchar,
        discount_percent bigint, ct_source varchar, ct_app_version varchar""",
    "added_to_cart": """product_name varchar, category varchar, price double, quantity bigint,
        ct_source varchar, ct_app_version varchar""",
}

# Property values per table (SQL over the generated `e` row).
PROPERTY_VALUES = {
    "app_launched": """app_version, source, 60102, '14', ['Vodafone','Jio','T-Mobile','Airtel'][1 + r1 % 4],
        ['4G','5G','WiFi'][1 + r2 % 3], r1 % 5 < 2, 8 + (r1 % 2700) / 100.0, 68 + (r2 % 2200) / 100.0,
        epoch(ts)::bigint, model""",
    "app_installed": "app_version, source, 8 + (r1 % 2700) / 100.0, 68 + (r2 % 2200) / 100.0",
    "app_uninstalled": "'System', object_id, push_token, 'FCM'",
    "app_version_changed": "app_version, '4.0.0', source",
    "charged": """round(amount, 2), 'USD', ['Credit Card','UPI','Wallet'][1 + r1 % 3], 'ord-' || id[1:10],
        '$D_' || (epoch(ts)::bigint + 259200), items, app_version, source""",
    "notification_sent": "campaign_id, campaign_name, campaign_type, 'promo', 'Variant A', source, app_version",
    "notification_viewed": """campaign_id, campaign_name, campaign_type, 'promo', 'Variant A', campaign_id,
        'wzrk_default', 'myapp://sale', source, app_version""",
    "push_impressions": """campaign_id, campaign_name, campaign_type, 'promo', 'Variant A', campaign_id,
        'wzrk_default', 'myapp://sale', source, app_version""",
    "notification_clicked": """campaign_id, campaign_name, campaign_type, 'promo', 'Variant A', campaign_id,
        'wzrk_default', 'myapp://sale', ['shop_now','later','__dismiss__'][1 + r1 % 3], source, app_version""",
    "utm_visited": "'1709900000', 'Email', ['Y','N'][1 + r1 % 2], source, app_version",
    "product_viewed": "product_name, category, price, 'NONE', 0, source, app_version",
    "added_to_cart": "product_name, category, price, 1 + r1 % 4, source, app_version",
}


def log(message: str) -> None:
    print(message, flush=True)


def generate(path: Path, events: int, users: int) -> None:
    """Write the warehouse: users, their lifecycle events, then session events weighted by activity."""
    start = END - timedelta(days=DAYS)
    con = duckdb.connect(str(path))
    con.execute("set TimeZone = 'UTC'")
    con.execute(f"create schema {SCHEMA}")
    # A signed, deterministic pseudo-random number per (row, purpose): hash() is unsigned.
    con.execute("create temp macro hk(a, b) as (hash(a, b) % 1000000007)::bigint")
    span = DAYS * 86400
    con.execute(
        f"""
        create temp table people as
        with base as (
            select
                i as idx,
                '__g' || substr(md5('user' || i), 1, 16) as object_id,
                hk(i, 'known') % 100 < 75 as is_known,
                hk(i, 'install') % 100 < 33 as installed_before,
                hk(i, 'frac') % 1000000 / 1000000.0 as u1,
                hk(i, 'frac2') % 1000000 / 1000000.0 as u2,
                hk(i, 'dormant') % 100 < 12 as is_dormant,
                hk(i, 'gone') % 100 < 8 as is_gone,
                ['Android', 'iOS', 'Web'][1 + hk(i, 'platform') % 3] as platform
            from range({users}) as t(i)
        )
        select
            *,
            case when is_known then 'u-' || lpad(idx::varchar, 7, '0') end as identity,
            case when is_known then 'user' || idx || '@example.com' end as email,
            case
                when installed_before then timestamptz '{start.isoformat()}' - to_seconds((u1 * {span})::bigint)
                else timestamptz '{start.isoformat()}' + to_seconds((u1 * {span} * 0.9)::bigint)
            end as installed_at,
            case platform when 'Android' then 'fcm:' || substr(md5('t' || idx), 1, 24)
                when 'iOS' then 'apns:' || substr(md5('t' || idx), 1, 24) end as push_token
        from base
        """
    )
    con.execute(
        f"""
        create temp table people_timeline as
        select
            *,
            case when is_gone then least(
                installed_at + to_seconds(({span} * 0.05 + u2 * {span} * 0.9)::bigint),
                timestamptz '{END.isoformat()}' - interval 60 second
            ) end as uninstalled_at,
            case
                when is_dormant then timestamptz '{END.isoformat()}' - to_seconds((86400 * (15 + u2 * 25))::bigint)
                else timestamptz '{END.isoformat()}'
            end as active_until
        from people
        """
    )
    # Installs and uninstalls inside the window come out of the same event budget.
    session_events = (
        events
        - con.execute(
            f"""
        select
            count(*) filter (where installed_at >= timestamptz '{start.isoformat()}')
            + count(*) filter (where uninstalled_at >= timestamptz '{start.isoformat()}')
        from people_timeline
        """
        ).fetchone()[0]
    )
    weights = sum(weight for _, _, weight in SESSION_EVENTS)
    cases = []
    cumulative = 0
    for name, _table, weight in SESSION_EVENTS:
        cumulative += weight
        cases.append(f"when pick < {cumulative / weights} then '{name}'")
    # Activity follows a power law: a few users produce many events.
    con.execute(
        f"""
        create temp table session_rows as
        select
            i as n,
            least({users - 1}, floor(pow(hk(i, 'who') % 1000000 / 1000000.0, 2.5) * {users}))::bigint as idx,
            case {" ".join(cases)} else 'App Launched' end as event_text,
            hk(i, 'when') % 1000000 / 1000000.0 as w
        from (
            select i, hk(i, 'what') % 1000000 / 1000000.0 as pick from range({max(session_events, 0)}) as t(i)
        )
        """
    )
    con.execute(
        f"""
        create temp table e as
        with session as (
            select
                s.event_text,
                p.*,
                greatest(p.installed_at, timestamptz '{start.isoformat()}')
                    + to_seconds((s.w * greatest(
                        epoch(least(p.active_until, coalesce(p.uninstalled_at, p.active_until)))
                        - epoch(greatest(p.installed_at, timestamptz '{start.isoformat()}')), 1))::bigint) as ts,
                s.n
            from session_rows as s
            join people_timeline as p using (idx)
        ),
        lifecycle as (
            select 'App Installed' as event_text, p.*, p.installed_at as ts, -1 - idx as n
            from people_timeline as p where installed_at >= timestamptz '{start.isoformat()}'
            union all
            select 'App Uninstalled', p.*, p.uninstalled_at, -10000000000 - idx
            from people_timeline as p where uninstalled_at >= timestamptz '{start.isoformat()}'
        ),
        all_events as (
            select * from session
            union all
            select * from lifecycle
        )
        select
            md5(event_text || n) as id,
            event_text,
            object_id,
            -- Known users log in at install; a fifth of them browse anonymously for a day first.
            case when is_known and (hk(idx, 'late') % 5 > 0 or ts > installed_at + interval 1 day)
                then identity end as identity,
            case when is_known then email end as email,
            platform,
            push_token,
            ts,
            ['4.0.0', '4.1.0', '4.2.0', '4.3.1'][1 + hk(idx, 'v') % 4] as app_version,
            case platform when 'Web' then 'Web' else 'Mobile' end as source,
            case platform when 'Android' then 'Pixel 8' when 'iOS' then 'iPhone15,2' end as model,
            hk(n, 'r1') % 100000 as r1,
            hk(n, 'r2') % 100000 as r2,
            ['1710230000_20240312', '1710500001', '1711000002', '1712000003', '1713000004'][1 + hk(n, 'c') % 5]
                as campaign_id,
            ['Spring Sale', 'Win-back', 'Cart Reminder', 'Monthly Newsletter', 'Flash Deal'][1 + hk(n, 'c') % 5]
                as campaign_name,
            ['Push', 'Push', 'Push', 'Email', 'SMS'][1 + hk(n, 'c') % 5] as campaign_type,
            ['The millionaire next door', 'Casio Watch', 'USB-C Cable', 'Rain Jacket'][1 + hk(n, 'p') % 4]
                as product_name,
            ['books', 'electronics', 'electronics', 'apparel'][1 + hk(n, 'p') % 4] as category,
            [12.5, 59.99, 7.0, 89.0][1 + hk(n, 'p') % 4] as price,
            (1 + hk(n, 'q') % 3) * [12.5, 59.99, 7.0, 89.0][1 + hk(n, 'p') % 4] as amount,
            '[{{"Category":"' || ['books', 'electronics', 'electronics', 'apparel'][1 + hk(n, 'p') % 4]
                || '","Product name":"'
                || ['The millionaire next door', 'Casio Watch', 'USB-C Cable', 'Rain Jacket'][1 + hk(n, 'p') % 4]
                || '","Price":' || [12.5, 59.99, 7.0, 89.0][1 + hk(n, 'p') % 4]
                || ',"Quantity":' || (1 + hk(n, 'q') % 3) || '}}]' as items,
            case when hk(idx, 'utm') % 4 = 0 then ['newsletter', 'google', 'facebook'][1 + hk(idx, 'us') % 3] end
                as utm_source,
            case when hk(idx, 'utm') % 4 = 0 then ['email', 'cpc', 'social'][1 + hk(idx, 'us') % 3] end
                as utm_medium,
            case when hk(idx, 'utm') % 4 = 0
                then ['spring_sale', 'brand_search', 'summer_launch'][1 + hk(idx, 'us') % 3] end as utm_campaign
        from all_events
        """
    )
    received = END + timedelta(hours=1)
    tables = {table: name for name, table, _ in SESSION_EVENTS}
    tables.update({"app_installed": "App Installed", "app_uninstalled": "App Uninstalled"})
    for table, name in sorted(tables.items()):
        campaign = "utm_source, utm_medium, utm_campaign" if table == "utm_visited" else "null, null, null"
        con.execute(f"create table {SCHEMA}.{table} ({STANDARD}, {PROPERTIES[table]})")
        con.execute(
            f"""
            insert into {SCHEMA}.{table}
            select
                id, coalesce(identity, email), object_id, '{table}', '{name}', ts, ts,
                timestamptz '{received.isoformat()}', timestamptz '{received.isoformat()}',
                platform, push_token, identity, null, object_id,
                case when identity is not null then '["' || identity || '"]' end, null, email,
                null, model, case when platform <> 'Web' then app_version end, 60102, '14',
                case when platform = 'Web' then 'Chrome' end,
                {campaign},
                {PROPERTY_VALUES[table]}
            from e
            where event_text = '{name}'
            """
        )
    # App Version Changed is empty here: staging must cope with an (almost) empty table too.
    con.execute(f"create table {SCHEMA}.app_version_changed ({STANDARD}, {PROPERTIES['app_version_changed']})")
    event_tables = sorted([*tables, "app_version_changed"])
    columns = [part.strip().split(" ")[0] for part in STANDARD.replace("\n", " ").split(",")]
    selects = "\nunion all\n".join(f"select {', '.join(columns)} from {SCHEMA}.{t}" for t in event_tables)
    con.execute(f"create view {SCHEMA}.tracks as {selects}")
    con.execute(
        f"""
        create table {SCHEMA}.identifies as
        select
            md5('identify' || idx) as id,
            identity as user_id,
            object_id as anonymous_id,
            timestamptz '{END.isoformat()}' as "timestamp",
            timestamptz '{END.isoformat()}' as original_timestamp,
            timestamptz '{received.isoformat()}' as received_at,
            timestamptz '{received.isoformat()}' as uuid_ts,
            identity, object_id as clevertap_id, email,
            'User ' || idx as name,
            ['M', 'F'][1 + idx % 2] as gender,
            '$D_' || (315532800 + idx * 1000) as dob,
            push_token is not null as msg_push,
            email is not null as msg_email,
            idx % 3 = 0 as msg_sms,
            idx % 5 = 0 as msg_whatsapp,
            ['Gold', 'Silver', 'Bronze'][1 + idx % 3] as customer_type
        from people
        where identity is not null
        """
    )
    con.execute(
        f"""
        create table {SCHEMA}.users as
        select user_id as id, received_at, uuid_ts, identity, clevertap_id, email, name, gender, dob,
            msg_push, msg_email, msg_sms, msg_whatsapp, customer_type
        from {SCHEMA}.identifies
        """
    )
    counts = con.execute(f"select count(*), count(distinct anonymous_id) from {SCHEMA}.tracks").fetchone()
    log(f"generated {counts[0]:,} events from {counts[1]:,} devices in {path}")
    con.close()


def ensure_warehouse(events: int, users: int) -> Path:
    path = DATA / f"build-{events}-{users}.duckdb"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        started = time.perf_counter()
        generate(partial, events, users)
        partial.rename(path)
        log(f"warehouse generated in {time.perf_counter() - started:.1f} s")
    return path


def dbt_build(warehouse: Path, work: Path, *extra: str) -> float:
    """Run `dbt build` in its own process; return its wall time, failing loudly on errors."""
    env = dict(os.environ, CTSYNC_WAREHOUSE=str(warehouse), DO_NOT_TRACK="1")
    command = [
        str(Path(sys.executable).parent / "dbt"),
        "build",
        "--project-dir", str(REPO),
        "--profiles-dir", str(REPO),
        "--target-path", str(work / "target"),
        "--log-path", str(work / "logs"),
        # The generated warehouse has no _loads table for the project to find the schema by.
        "--vars", json.dumps({"as_of": END.strftime("%Y-%m-%dT%H:%M:%SZ"), "clevertap_schemas": [SCHEMA]}),
        *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.stdout.write(result.stdout[-6000:])
        raise SystemExit(f"dbt build failed (exit {result.returncode})")
    timings = json.loads((work / "target" / "run_results.json").read_text())["results"]
    slowest = sorted(timings, key=lambda r: r["execution_time"], reverse=True)[:6]
    log("  slowest: " + ", ".join(f"{r['unique_id'].split('.')[-1]} {r['execution_time']:.1f} s" for r in slowest))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    source = ensure_warehouse(args.events, args.users)
    work = DATA / "build-run"
    full, incremental = [], []
    for attempt in range(args.repeat):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        warehouse = work / "warehouse.duckdb"
        shutil.copyfile(source, warehouse)
        full.append(dbt_build(warehouse, work, "--full-refresh"))
        incremental.append(dbt_build(warehouse, work))
        log(f"run {attempt + 1}: full build {full[-1]:.1f} s, incremental rebuild {incremental[-1]:.1f} s")
    median_full = statistics.median(full)
    verdict = "meets" if median_full <= TARGET_SECONDS else "MISSES"
    log(
        f"dbt build on {args.events:,} events / {args.users:,} users: full {median_full:.1f} s "
        f"(target <= {TARGET_SECONDS:.0f} s: {verdict}), incremental {statistics.median(incremental):.1f} s"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
