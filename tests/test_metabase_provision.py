"""metabase/provision.py against a fake Metabase: Metabase itself cannot run here (no jar is
reachable), so `FakeMetabase` stands in for it.

The fake is a small ASGI app (Litestar) served over real HTTP by uvicorn in a thread, built
from the request and response shapes of Metabase v0.50's REST API (its endpoint schemas in
src/metabase/api/{setup,session,database,permissions,collection,card,dashboard}.clj and
docs/api/*.md), keeping its state in memory:
- the session header (X-Metabase-Session) is required everywhere but on the setup and
  login endpoints (401 "Unauthenticated" otherwise); /api/setup works once, with the
  setup-token of /api/session/properties, and refuses common passwords;
- each endpoint accepts the body fields Metabase documents for it and rejects any other
  (400 with Metabase's {"errors": {field: message}} shape), so a misspelt field fails here
  instead of being silently ignored; required fields and their types are checked;
- Metabase's defaults: a new database gives "All Users" native query access to it, a new
  group no query access, a new collection the root collection's permissions per group
  ("All Users" may write the root collection); the "Administrators" group cannot be
  changed; both permission graphs carry a revision (409 when stale);
- native cards must define every {{tag}} their query uses, and their parameters must
  point at those tags; dashboard cards must fit the 24-column grid and map dashboard
  parameters onto template tags of their own card.
Every request is logged with whether it changed anything, so a test can say what a run did.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from litestar import Litestar, Request, Response, route
from litestar.enums import HttpMethod
from litestar.params import FromPath

from api import installer, roles
from api.config import ROOT

from metabase import provision, tableros
from metabase.provision import Config, Marca, MetabaseError, provisionar

REDACTED = "**MetabasePass**"
ALL_USERS, ADMINS = 1, 2
COMMON_PASSWORDS = {"password", "123456", "12345678", "qwerty", "metabase", "admin123", "password1"}
POSTGRES_DETAILS = {
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "ssl",
    "ssl-mode",
    "tunnel-enabled",
    "advanced-options",
    "additional-options",
    "schema-filters-type",
    "schema-filters-patterns",
    "json-unfolding",
    "let-user-control-scheduling",
}


class Refused(Exception):
    def __init__(self, status: int, body):
        super().__init__(status, body)
        self.status, self.body = status, body


def invalid(field: str, message: str) -> Refused:
    return Refused(400, {"errors": {field: message}, "specific-errors": {field: [message]}})


# ---------------------------------------------------------------- field checks
def nonblank(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def posint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def natint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def is_map(v) -> bool:
    return isinstance(v, dict)


def boolean(v) -> bool:
    return isinstance(v, bool)


def string(v) -> bool:
    return isinstance(v, str)


def anything(_v) -> bool:
    return True


def parameters(v) -> bool:
    return isinstance(v, list) and all(
        isinstance(p, dict) and nonblank(p.get("id")) and nonblank(p.get("type")) for p in v
    )


def maybe(check):
    return lambda v: v is None or check(v)


def check_body(body, schema: dict[str, tuple[bool, object, str]]) -> dict:
    """schema: field -> (required, check, Metabase's message). Unknown fields are refused."""
    if not isinstance(body, dict):
        raise Refused(400, {"errors": {"body": "value must be a map."}})
    for k in body:
        if k not in schema:
            raise invalid(k, "unknown field: not a parameter of this endpoint in Metabase v0.50")
    for k, (required, check, message) in schema.items():
        if k not in body:
            if required:
                raise invalid(k, message)
        elif not check(body[k]):
            raise invalid(k, message)
    return body


MSG_NONBLANK = "value must be a non-blank string."
MSG_MAYBE_NONBLANK = "nullable value must be a non-blank string."
MSG_POSINT = "nullable value must be an integer greater than zero."
MSG_MAP = "Value must be a map."
MSG_BOOL = "nullable boolean"
MSG_PARAMS = "nullable sequence of parameter must be a map with :id and :type keys"


# ---------------------------------------------------------------- the fake
class FakeMetabase:
    """Metabase v0.50's API as far as provisioning uses it, in memory."""

    def __init__(self):
        self.setup_token = str(uuid.uuid4())
        self.users: dict[int, dict] = {}
        self.sessions: dict[str, int] = {}
        self.site: dict = {}
        self.ids = {
            k: itertools.count(1) for k in ("user", "db", "collection", "card", "dashboard", "dashcard")
        }
        self.group_ids = itertools.count(3)
        self.groups = {
            ALL_USERS: {"id": ALL_USERS, "name": "All Users"},
            ADMINS: {"id": ADMINS, "name": "Administrators"},
        }
        self.dbs: dict[int, dict] = {}
        self.collections: dict[int, dict] = {}
        self.cards: dict[int, dict] = {}
        self.dashboards: dict[int, dict] = {}
        self.data_graph: dict[int, dict[int, dict]] = {ALL_USERS: {}, ADMINS: {}}
        self.data_revision = 1
        self.coll_graph: dict[int, dict] = {ALL_USERS: {"root": "write"}, ADMINS: {"root": "write"}}
        self.coll_revision = 1
        self.calls: list[tuple[str, str, int, bool]] = []  # method, path, status, changed anything
        self.lock = threading.Lock()
        self.routes = [
            ("GET", r"/api/health", self.health, False),
            ("GET", r"/api/session/properties", self.properties, False),
            ("POST", r"/api/setup", self.setup, False),
            ("POST", r"/api/session", self.login, False),
            ("GET", r"/api/database", self.list_databases, True),
            ("POST", r"/api/database", self.create_database, True),
            ("PUT", r"/api/database/(\d+)", self.update_database, True),
            ("GET", r"/api/permissions/group", self.list_groups, True),
            ("POST", r"/api/permissions/group", self.create_group, True),
            ("GET", r"/api/permissions/graph", self.get_data_graph, True),
            ("PUT", r"/api/permissions/graph", self.put_data_graph, True),
            ("GET", r"/api/collection", self.list_collections, True),
            ("POST", r"/api/collection", self.create_collection, True),
            ("GET", r"/api/collection/graph", self.get_coll_graph, True),
            ("PUT", r"/api/collection/graph", self.put_coll_graph, True),
            ("GET", r"/api/collection/(\d+)/items", self.collection_items, True),
            ("PUT", r"/api/collection/(\d+)", self.update_collection, True),
            ("GET", r"/api/card", self.list_cards, True),
            ("POST", r"/api/card", self.create_card, True),
            ("GET", r"/api/card/(\d+)", self.get_card, True),
            ("PUT", r"/api/card/(\d+)", self.update_card, True),
            ("POST", r"/api/dashboard", self.create_dashboard, True),
            ("GET", r"/api/dashboard/(\d+)", self.get_dashboard, True),
            ("PUT", r"/api/dashboard/(\d+)", self.update_dashboard, True),
        ]

    # ------------------------------------------------------------ dispatch
    def handle(self, method: str, path: str, query: dict[str, list[str]], headers, raw: bytes):
        path = path.rstrip("/") or "/"
        with self.lock:
            before = self._snapshot()
            status, body = self._dispatch(method, path, query, headers, raw)
            changed = self._snapshot() != before
            self.calls.append((method, path, status, changed))
            return status, body

    def _snapshot(self):
        return copy.deepcopy(
            [
                self.users,
                self.dbs,
                self.groups,
                self.collections,
                self.cards,
                self.dashboards,
                self.data_graph,
                self.coll_graph,
                self.site,
            ]
        )

    def _dispatch(self, method, path, query, headers, raw):
        for m, pattern, fn, auth in self.routes:
            match = re.fullmatch(pattern, path)
            if m == method and match:
                if auth and headers.get("x-metabase-session") not in self.sessions:
                    return 401, "Unauthenticated"
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    return 400, {"errors": {"body": "malformed JSON"}}
                try:
                    return 200, fn(*[int(g) for g in match.groups()], body=body, query=query)
                except Refused as e:
                    return e.status, e.body
        return 404, "API endpoint does not exist."

    # ------------------------------------------------------------ session and setup
    def health(self, body, query):
        return {"status": "ok"}

    def properties(self, body, query):
        return {
            "setup-token": None if self.users else self.setup_token,
            "has-user-setup": bool(self.users),
            "version": {"tag": provision.VERSION},
            "site-name": self.site.get("site_name"),
            "site-locale": self.site.get("site_locale", "en"),
        }

    def setup(self, body, query):
        check_body(
            body,
            {
                "token": (True, nonblank, "Token does not match the setup token."),
                "user": (True, is_map, MSG_MAP),
                "prefs": (True, is_map, MSG_MAP),
                "database": (False, maybe(is_map), MSG_MAP),
                "invite": (False, maybe(is_map), MSG_MAP),
            },
        )
        if self.users:
            raise Refused(
                403,
                "The /api/setup route can only be used to create the first user, however a user "
                "currently exists.",
            )
        if body["token"] != self.setup_token:
            raise invalid("token", "Token does not match the setup token.")
        user = check_body(
            body["user"],
            {
                "first_name": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
                "last_name": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
                "email": (
                    True,
                    lambda v: isinstance(v, str) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v),
                    "value must be a valid email address.",
                ),
                "password": (
                    True,
                    lambda v: isinstance(v, str) and len(v) >= 6 and v.lower() not in COMMON_PASSWORDS,
                    "password is too common.",
                ),
                "password_confirm": (False, maybe(string), "passwords do not match"),
                "site_name": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
            },
        )
        prefs = check_body(
            body["prefs"],
            {
                "site_name": (True, nonblank, MSG_NONBLANK),
                "site_locale": (
                    False,
                    maybe(lambda v: isinstance(v, str) and re.fullmatch(r"[a-z]{2}(_[A-Z]{2})?", v)),
                    "String must be a valid two-letter ISO language or language-country code e.g. en or en_US.",
                ),
                "allow_tracking": (
                    False,
                    maybe(lambda v: isinstance(v, bool) or v in ("true", "false")),
                    MSG_BOOL,
                ),
            },
        )
        uid = next(self.ids["user"])
        self.users[uid] = {
            "id": uid,
            "email": user["email"],
            "password": user["password"],
            "is_superuser": True,
        }
        self.site = dict(prefs)
        cid = next(self.ids["collection"])  # every user gets a personal collection
        self.collections[cid] = {
            "id": cid,
            "name": f"{user.get('first_name')} {user.get('last_name')}'s Personal Collection",
            "description": None,
            "location": "/",
            "personal_owner_id": uid,
            "archived": False,
            "namespace": None,
            "authority_level": None,
        }
        return {"id": self._session(uid)}

    def _session(self, uid: int) -> str:
        sid = str(uuid.uuid4())
        self.sessions[sid] = uid
        return sid

    def login(self, body, query):
        check_body(
            body,
            {
                "username": (True, nonblank, MSG_NONBLANK),
                "password": (True, nonblank, MSG_NONBLANK),
                "remember": (False, maybe(boolean), MSG_BOOL),
            },
        )
        user = next((u for u in self.users.values() if u["email"].lower() == body["username"].lower()), None)
        if user is None or user["password"] != body["password"]:
            raise Refused(401, {"errors": {"password": "did not match stored password"}})
        return {"id": self._session(user["id"])}

    # ------------------------------------------------------------ databases
    def _public_db(self, db):
        shown = copy.deepcopy(db)
        if "password" in shown["details"]:
            shown["details"]["password"] = REDACTED
        return shown

    def list_databases(self, body, query):
        data = [self._public_db(d) for d in sorted(self.dbs.values(), key=lambda d: d["name"].lower())]
        return {"data": data, "total": len(data)}

    def _check_details(self, engine: str, details: dict):
        if engine != "postgres":
            return
        for k in details:
            if k not in POSTGRES_DETAILS:
                raise invalid("details", f"unknown connection property for postgres: {k}")
        for k in ("host", "dbname", "user"):
            if not nonblank(details.get(k)):
                raise Refused(
                    400, {"errors": {k: "missing required connection property"}, "message": f"{k}?"}
                )
        if "port" in details and not posint(details["port"]):
            raise invalid("port", "port must be a positive integer")
        if details.get("schema-filters-type", "all") not in ("all", "inclusion", "exclusion"):
            raise invalid("schema-filters-type", "must be all, inclusion or exclusion")

    def create_database(self, body, query):
        check_body(
            body,
            {
                "name": (True, nonblank, MSG_NONBLANK),
                "engine": (
                    True,
                    lambda v: v in ("postgres", "h2", "mysql"),
                    "value must be a valid database engine.",
                ),
                "details": (True, is_map, MSG_MAP),
                "is_full_sync": (False, maybe(boolean), MSG_BOOL),
                "is_on_demand": (False, maybe(boolean), MSG_BOOL),
                "schedules": (False, maybe(is_map), MSG_MAP),
                "auto_run_queries": (False, maybe(boolean), MSG_BOOL),
                "cache_ttl": (False, maybe(posint), MSG_POSINT),
                "connection_source": (False, maybe(lambda v: v in ("admin", "setup")), "enum"),
            },
        )
        if body.get("cache_ttl"):
            raise Refused(402, "The cache TTL database setting is only enabled if you have a premium token.")
        self._check_details(body["engine"], body["details"])
        did = next(self.ids["db"])
        self.dbs[did] = {
            "id": did,
            "name": body["name"],
            "engine": body["engine"],
            "details": body["details"],
            "description": None,
            "is_full_sync": body.get("is_full_sync", True),
            "is_on_demand": body.get("is_on_demand", False),
            "auto_run_queries": body.get("auto_run_queries", True),
            "is_sample": False,
        }
        # Metabase's defaults for a new database: All Users may query it, other groups may not
        for g in self.groups:
            self.data_graph.setdefault(g, {})[did] = (
                {
                    "view-data": "unrestricted",
                    "create-queries": "query-builder-and-native",
                    "download": {"schemas": "full"},
                }
                if g in (ALL_USERS, ADMINS)
                else {"view-data": "unrestricted", "create-queries": "no"}
            )
        return self._public_db(self.dbs[did])

    def update_database(self, did, body, query):
        check_body(
            body,
            {
                k: (False, c, m)
                for k, c, m in (
                    ("name", maybe(nonblank), MSG_MAYBE_NONBLANK),
                    ("engine", maybe(nonblank), MSG_MAYBE_NONBLANK),
                    ("refingerprint", maybe(boolean), MSG_BOOL),
                    ("details", maybe(is_map), MSG_MAP),
                    ("schedules", maybe(is_map), MSG_MAP),
                    ("description", maybe(string), "nullable string"),
                    ("caveats", maybe(string), "nullable string"),
                    ("points_of_interest", maybe(string), "nullable string"),
                    ("auto_run_queries", maybe(boolean), MSG_BOOL),
                    ("cache_ttl", maybe(posint), MSG_POSINT),
                    ("settings", maybe(is_map), MSG_MAP),
                    ("is_full_sync", maybe(boolean), MSG_BOOL),
                    ("is_on_demand", maybe(boolean), MSG_BOOL),
                )
            },
        )
        db = self.dbs.get(did) or _not_found()
        if body.get("details") is not None:
            details = dict(body["details"])
            if details.get("password") == REDACTED:
                details["password"] = db["details"].get("password")
            self._check_details(body.get("engine") or db["engine"], details)
            db["details"] = details
        for k in (
            "name",
            "engine",
            "description",
            "caveats",
            "points_of_interest",
            "auto_run_queries",
            "is_full_sync",
            "is_on_demand",
        ):
            if body.get(k) is not None:
                db[k] = body[k]
        return self._public_db(db)

    # ------------------------------------------------------------ groups and data permissions
    def list_groups(self, body, query):
        members = {ALL_USERS: len(self.users), ADMINS: len(self.users)}
        return [
            {**g, "member_count": members.get(g["id"], 0)}
            for g in sorted(self.groups.values(), key=lambda g: g["name"].lower())
        ]

    def create_group(self, body, query):
        check_body(body, {"name": (True, nonblank, MSG_NONBLANK)})
        if any(g["name"] == body["name"] for g in self.groups.values()):
            raise Refused(400, {"message": "A group with that name already exists."})
        gid = next(self.group_ids)
        self.groups[gid] = {"id": gid, "name": body["name"]}
        self.data_graph[gid] = {d: {"view-data": "unrestricted", "create-queries": "no"} for d in self.dbs}
        self.coll_graph[gid] = {"root": "none", **{c: "none" for c in self._shared_collections()}}
        return self.groups[gid]

    def get_data_graph(self, body, query):
        return {
            "revision": self.data_revision,
            "groups": {
                str(g): {str(d): copy.deepcopy(p) for d, p in dbs.items()}
                for g, dbs in self.data_graph.items()
            },
        }

    def put_data_graph(self, body, query):
        check_body(
            body,
            {
                "revision": (False, maybe(lambda v: isinstance(v, int)), "nullable integer"),
                "groups": (True, is_map, MSG_MAP),
                "force": (False, maybe(boolean), MSG_BOOL),
                "sandboxes": (False, anything, ""),
                "impersonations": (False, anything, ""),
            },
        )
        if body.get("sandboxes") or body.get("impersonations"):
            raise Refused(402, "Sandboxes is a paid feature not currently available to your instance.")
        if body.get("revision") != self.data_revision and not body.get("force"):
            raise Refused(
                409,
                "Looks like someone else edited the permissions and your data is out of date. "
                "Please fetch new data and try again.",
            )
        for g, dbs in body["groups"].items():
            g = int(g)
            if g not in self.groups:
                raise invalid("groups", f"no group {g}")
            if g == ADMINS:
                raise Refused(400, "You cannot change the permissions of the Administrators group.")
            for d, perms in dbs.items():
                d = int(d)
                if d not in self.dbs:
                    raise invalid("groups", f"no database {d}")
                for k, v in perms.items():
                    ok = {
                        "view-data": {"unrestricted", "legacy-no-self-service", "blocked"},
                        "create-queries": {"query-builder-and-native", "query-builder", "no"},
                    }.get(k)
                    if ok is None and k not in ("download", "data-model", "details"):
                        raise invalid("groups", f"unknown permission {k}")
                    if ok is not None and v not in ok:
                        raise invalid("groups", f"{k}: invalid value {v}")
                merged = {**self.data_graph[g].get(d, {}), **perms}
                if (
                    merged.get("create-queries") == "query-builder-and-native"
                    and merged.get("view-data") == "blocked"
                ):
                    raise invalid(
                        "groups",
                        "Invalid DB permissions: If you have write access for native queries, you "
                        "must have data access to all schemas.",
                    )
                self.data_graph[g][d] = merged
        self.data_revision += 1
        return self.get_data_graph(None, None)

    # ------------------------------------------------------------ collections
    def _shared_collections(self):
        return [c for c, col in self.collections.items() if col["personal_owner_id"] is None]

    def list_collections(self, body, query):
        root = {
            "id": "root",
            "name": "Our analytics",
            "location": None,
            "personal_owner_id": None,
            "can_write": True,
        }
        return [root] + [copy.deepcopy(c) for c in self.collections.values() if not c["archived"]]

    def create_collection(self, body, query):
        check_body(
            body,
            {
                "name": (True, nonblank, MSG_NONBLANK),
                "description": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
                "parent_id": (False, maybe(posint), MSG_POSINT),
                "namespace": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
                "authority_level": (False, maybe(lambda v: v == "official"), "nullable enum of official"),
            },
        )
        parent = body.get("parent_id")
        if parent is not None and parent not in self.collections:
            _not_found()
        cid = next(self.ids["collection"])
        self.collections[cid] = {
            "id": cid,
            "name": body["name"],
            "description": body.get("description"),
            "location": "/" if parent is None else f"/{parent}/",
            "personal_owner_id": None,
            "archived": False,
            "namespace": body.get("namespace"),
            "authority_level": body.get("authority_level"),
        }
        # a new collection gets, per group, the permissions of its parent (root here)
        for perms in self.coll_graph.values():
            perms[cid] = perms.get(parent if parent is not None else "root", "none")
        return copy.deepcopy(self.collections[cid])

    def update_collection(self, cid, body, query):
        check_body(
            body,
            {
                "name": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
                "description": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
                "archived": (False, maybe(boolean), MSG_BOOL),
                "parent_id": (False, maybe(posint), MSG_POSINT),
                "authority_level": (False, maybe(lambda v: v == "official"), "enum"),
            },
        )
        col = self.collections.get(cid) or _not_found()
        for k in ("name", "description", "archived", "authority_level"):
            if k in body:
                col[k] = body[k]
        return copy.deepcopy(col)

    def get_coll_graph(self, body, query):
        shared = set(self._shared_collections())
        return {
            "revision": self.coll_revision,
            "groups": {
                str(g): {str(c): p for c, p in perms.items() if c == "root" or c in shared}
                for g, perms in self.coll_graph.items()
            },
        }

    def put_coll_graph(self, body, query):
        check_body(
            body,
            {
                "revision": (True, lambda v: isinstance(v, int), "value must be an integer."),
                "groups": (True, is_map, MSG_MAP),
                "namespace": (False, maybe(nonblank), MSG_MAYBE_NONBLANK),
                "skip_graph": (False, maybe(boolean), MSG_BOOL),
            },
        )
        if body["revision"] != self.coll_revision:
            raise Refused(
                409,
                "Looks like someone else edited the permissions and your data is out of date. "
                "Please fetch new data and try again.",
            )
        shared = set(self._shared_collections())
        for g, perms in body["groups"].items():
            g = int(g)
            if g not in self.groups:
                raise invalid("groups", f"no group {g}")
            if g == ADMINS:
                raise Refused(400, "You cannot edit permissions for the Administrators group.")
            for c, p in perms.items():
                key = "root" if c == "root" else int(c)
                if key != "root" and key not in shared:
                    raise invalid("groups", f"no collection {c} (personal collections have no permissions)")
                if p not in ("read", "write", "none"):
                    raise invalid("groups", f"invalid collection permission {p}")
                self.coll_graph[g][key] = p
        self.coll_revision += 1
        return {"revision": self.coll_revision} if body.get("skip_graph") else self.get_coll_graph(None, None)

    def collection_items(self, cid, body, query):
        if cid not in self.collections:
            _not_found()
        models = query.get("models") or ["card", "dashboard", "collection"]
        data = []
        if "card" in models:
            data += [
                {
                    "id": c["id"],
                    "name": c["name"],
                    "description": c["description"],
                    "model": "card",
                    "display": c["display"],
                }
                for c in self.cards.values()
                if c["collection_id"] == cid and not c["archived"]
            ]
        if "dashboard" in models:
            data += [
                {"id": d["id"], "name": d["name"], "description": d["description"], "model": "dashboard"}
                for d in self.dashboards.values()
                if d["collection_id"] == cid and not d["archived"]
            ]
        return {"total": len(data), "data": data, "models": models, "limit": None, "offset": None}

    # ------------------------------------------------------------ cards
    CARD_FIELDS: ClassVar[dict] = {
        "name": (MSG_NONBLANK, nonblank),
        "dataset_query": (MSG_MAP, is_map),
        "display": (MSG_NONBLANK, nonblank),
        "visualization_settings": (MSG_MAP, is_map),
        "description": (MSG_MAYBE_NONBLANK, maybe(string)),
        "collection_id": (MSG_POSINT, maybe(posint)),
        "collection_position": (MSG_POSINT, maybe(posint)),
        "result_metadata": ("results metadata", maybe(lambda v: isinstance(v, list))),
        "parameters": (MSG_PARAMS, maybe(parameters)),
        "parameter_mappings": ("parameter_mappings", maybe(lambda v: isinstance(v, list))),
        "cache_ttl": (MSG_POSINT, maybe(posint)),
        "type": (
            "nullable enum of model, question, metric",
            maybe(lambda v: v in ("question", "model", "metric")),
        ),
        "dataset": (MSG_BOOL, maybe(boolean)),
    }
    CARD_UPDATE_ONLY: ClassVar[dict] = {
        "archived": (MSG_BOOL, maybe(boolean)),
        "enable_embedding": (MSG_BOOL, maybe(boolean)),
        "embedding_params": (MSG_MAP, maybe(is_map)),
        "collection_preview": (MSG_BOOL, maybe(boolean)),
    }

    def _check_query(self, q: dict, parameters_: list | None):
        if q.get("type") != "native":
            raise invalid("dataset_query", "only native queries in this fake")
        if set(q) - {"database", "type", "native"} or q.get("database") not in self.dbs:
            raise invalid("dataset_query", "must be {database (an existing id), type, native}")
        native = q.get("native") or {}
        if set(native) - {"query", "template-tags"} or not nonblank(native.get("query")):
            raise invalid("dataset_query", "native must be {query, template-tags}")
        tags = native.get("template-tags") or {}
        used = set(re.findall(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}", native["query"]))
        if used != set(tags):
            raise invalid("dataset_query", f"template tags used {sorted(used)} but defined {sorted(tags)}")
        for name, tag in tags.items():
            if set(tag) - {
                "id",
                "name",
                "display-name",
                "type",
                "default",
                "required",
                "widget-type",
                "dimension",
            }:
                raise invalid("dataset_query", f"unknown template tag keys: {sorted(tag)}")
            if (
                tag.get("name") != name
                or not nonblank(tag.get("id"))
                or not nonblank(tag.get("display-name"))
                or tag.get("type") not in ("text", "number", "date", "dimension", "card", "snippet")
            ):
                raise invalid("dataset_query", f"invalid template tag {name}")
        for p in parameters_ or []:
            target = p.get("target")
            if not (
                isinstance(target, list)
                and len(target) == 2
                and target[0] == "variable"
                and target[1][:1] == ["template-tag"]
                and target[1][1] in tags
            ):
                raise invalid("parameters", f"parameter {p.get('id')} does not target a template tag")
            if tags[target[1][1]]["id"] != p["id"]:
                raise invalid("parameters", f"parameter {p['id']} has not the id of its template tag")

    def list_cards(self, body, query):
        return [copy.deepcopy(c) for c in self.cards.values() if not c["archived"]]

    def get_card(self, cid, body, query):
        return copy.deepcopy(self.cards.get(cid) or _not_found())

    def create_card(self, body, query):
        check_body(
            body,
            {
                k: (k in ("name", "dataset_query", "display", "visualization_settings"), check, message)
                for k, (message, check) in self.CARD_FIELDS.items()
            },
        )
        if body.get("collection_id") is not None and body["collection_id"] not in self.collections:
            _not_found()
        self._check_query(body["dataset_query"], body.get("parameters"))
        cid = next(self.ids["card"])
        self.cards[cid] = {
            "id": cid,
            "archived": False,
            "type": "question",
            "description": None,
            "collection_id": None,
            "parameters": [],
            "parameter_mappings": [],
            "cache_ttl": None,
            "collection_position": None,
            "enable_embedding": False,
            "query_type": "native",
            **{k: v for k, v in body.items() if k != "dataset"},
            "database_id": body["dataset_query"]["database"],
        }
        return copy.deepcopy(self.cards[cid])

    def update_card(self, cid, body, query):
        fields = {**self.CARD_FIELDS, **self.CARD_UPDATE_ONLY}
        check_body(body, {k: (False, check, message) for k, (message, check) in fields.items()})
        card = self.cards.get(cid) or _not_found()
        if "dataset_query" in body or "parameters" in body:
            self._check_query(
                body.get("dataset_query", card["dataset_query"]), body.get("parameters", card["parameters"])
            )
        for k, v in body.items():
            if v is not None and k not in ("dataset", "collection_preview"):
                card[k] = v
        card["database_id"] = card["dataset_query"]["database"]
        return copy.deepcopy(card)

    # ------------------------------------------------------------ dashboards
    def create_dashboard(self, body, query):
        check_body(
            body,
            {
                "name": (True, nonblank, MSG_NONBLANK),
                "description": (False, maybe(string), "string"),
                "parameters": (False, maybe(parameters), MSG_PARAMS),
                "cache_ttl": (False, maybe(posint), MSG_POSINT),
                "collection_id": (False, maybe(posint), MSG_POSINT),
                "collection_position": (False, maybe(posint), MSG_POSINT),
            },
        )
        if body.get("collection_id") is not None and body["collection_id"] not in self.collections:
            _not_found()
        did = next(self.ids["dashboard"])
        self.dashboards[did] = {
            "id": did,
            "name": body["name"],
            "description": body.get("description"),
            "parameters": body.get("parameters") or [],
            "collection_id": body.get("collection_id"),
            "archived": False,
            "dashcards": [],
            "tabs": [],
            "auto_apply_filters": True,
        }
        return self._dashboard(did)

    def _dashboard(self, did):
        d = copy.deepcopy(self.dashboards.get(did) or _not_found())
        for dc in d["dashcards"]:
            dc["card"] = copy.deepcopy(self.cards.get(dc["card_id"]))
        return d

    def get_dashboard(self, did, body, query):
        return self._dashboard(did)

    DASHCARD_KEYS: ClassVar[set] = {
        "id",
        "card_id",
        "size_x",
        "size_y",
        "row",
        "col",
        "parameter_mappings",
        "series",
        "visualization_settings",
        "dashboard_tab_id",
        "action_id",
    }

    def update_dashboard(self, did, body, query):
        check_body(
            body,
            {
                k: (False, c, m)
                for k, c, m in (
                    ("name", maybe(nonblank), MSG_MAYBE_NONBLANK),
                    ("description", maybe(string), "string"),
                    ("caveats", maybe(string), "string"),
                    ("points_of_interest", maybe(string), "string"),
                    ("show_in_getting_started", maybe(boolean), MSG_BOOL),
                    ("enable_embedding", maybe(boolean), MSG_BOOL),
                    ("embedding_params", maybe(is_map), MSG_MAP),
                    ("parameters", maybe(parameters), MSG_PARAMS),
                    ("position", maybe(posint), MSG_POSINT),
                    ("archived", maybe(boolean), MSG_BOOL),
                    ("collection_id", maybe(posint), MSG_POSINT),
                    ("collection_position", maybe(posint), MSG_POSINT),
                    ("cache_ttl", maybe(posint), MSG_POSINT),
                    ("auto_apply_filters", maybe(boolean), MSG_BOOL),
                    (
                        "dashcards",
                        maybe(lambda v: isinstance(v, list)),
                        "value must be an array of dashboard cards",
                    ),
                    ("tabs", maybe(lambda v: isinstance(v, list)), "value must be an array of tabs"),
                )
            },
        )
        dash = self.dashboards.get(did) or _not_found()
        params = body.get("parameters") if body.get("parameters") is not None else dash["parameters"]
        if body.get("dashcards") is not None:
            new, mine = [], {dc["id"] for dc in dash["dashcards"]}
            ids = [dc.get("id") for dc in body["dashcards"]]
            if len(ids) != len(set(ids)):
                raise invalid("dashcards", "ids must be unique")
            occupied = set()
            for dc in body["dashcards"]:
                if set(dc) - self.DASHCARD_KEYS:
                    raise invalid("dashcards", f"unknown keys {sorted(set(dc) - self.DASHCARD_KEYS)}")
                if not (
                    isinstance(dc.get("id"), int)
                    and posint(dc.get("size_x"))
                    and posint(dc.get("size_y"))
                    and natint(dc.get("row"))
                    and natint(dc.get("col"))
                ):
                    raise invalid("dashcards", "id, size_x, size_y, row and col are required integers")
                if dc["id"] > 0 and dc["id"] not in mine:
                    raise invalid("dashcards", f"dashcard {dc['id']} is not on this dashboard")
                if dc["col"] + dc["size_x"] > 24:
                    raise invalid("dashcards", "a dashboard card must fit the 24-column grid")
                cells = {
                    (r, c)
                    for r in range(dc["row"], dc["row"] + dc["size_y"])
                    for c in range(dc["col"], dc["col"] + dc["size_x"])
                }
                if cells & occupied:
                    raise invalid("dashcards", "dashboard cards overlap")
                occupied |= cells
                card = self.cards.get(dc.get("card_id"))
                if card is None or card["archived"]:
                    raise invalid("dashcards", f"no card {dc.get('card_id')}")
                tags = set(card["dataset_query"]["native"].get("template-tags") or {})
                for pm in dc.get("parameter_mappings") or []:
                    if set(pm) != {"parameter_id", "card_id", "target"}:
                        raise invalid("parameter_mappings", f"keys {sorted(pm)}")
                    if pm["parameter_id"] not in {p["id"] for p in params}:
                        raise invalid("parameter_mappings", f"no dashboard parameter {pm['parameter_id']}")
                    t = pm["target"]
                    if pm["card_id"] != card["id"] or not (
                        t[:1] == ["variable"] and t[1][:1] == ["template-tag"] and t[1][1] in tags
                    ):
                        raise invalid(
                            "parameter_mappings", f"target {t} is not a template tag of card {card['id']}"
                        )
                keep = {k: v for k, v in dc.items() if k != "id"}
                new.append(
                    {
                        "id": dc["id"] if dc["id"] > 0 else next(self.ids["dashcard"]),
                        "parameter_mappings": [],
                        "series": [],
                        "visualization_settings": {},
                        "dashboard_tab_id": None,
                        **keep,
                    }
                )
            dash["dashcards"] = new
        for k in (
            "name",
            "description",
            "parameters",
            "archived",
            "collection_id",
            "cache_ttl",
            "auto_apply_filters",
            "caveats",
            "points_of_interest",
        ):
            if body.get(k) is not None:
                dash[k] = body[k]
        if body.get("tabs") is not None:
            dash["tabs"] = body["tabs"]
        return self._dashboard(did)

    # ------------------------------------------------------------ for the tests
    def non_gets(self, since: int = 0) -> list[tuple[str, str, int, bool]]:
        return [c for c in self.calls[since:] if c[0] != "GET"]

    def group_id(self, name: str) -> int:
        return next(g for g, v in self.groups.items() if v["name"] == name)

    def db_id(self, name: str) -> int:
        return next(d for d, v in self.dbs.items() if v["name"] == name)

    def collection_id(self, name: str) -> int:
        return next(
            c for c, v in self.collections.items() if v["name"] == name and v["personal_owner_id"] is None
        )


def _not_found():
    raise Refused(404, "Not found.")


def asgi_app(fake: FakeMetabase) -> Litestar:
    @route(
        "/api/{rest:path}", http_method=[HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE]
    )
    async def api(request: Request, rest: FromPath[str]) -> Response:
        raw = await request.body()
        query = {k: request.query_params.getall(k) for k in request.query_params}
        status, body = fake.handle(request.method, "/api" + rest, query, request.headers, raw)
        if isinstance(body, str):
            return Response(body, status_code=status, media_type="text/plain")
        return Response(json.dumps(body), status_code=status, media_type="application/json")

    return Litestar([api], debug=False, logging_config=None)


class Server:
    """uvicorn on a free local port, in a thread: real HTTP, as the provisioning sees it."""

    def __init__(self, app):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn no arrancó"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


# ---------------------------------------------------------------- fixtures
MARCAS = [Marca("gollos", "Gollos Chicken's"), Marca("goio", "Goio Store")]
N_CARDS = sum(len(t.tarjetas) for t in tableros.TABLEROS)


@pytest.fixture
def metabase():
    fake = FakeMetabase()
    with Server(asgi_app(fake)) as server:
        yield fake, server.url


def _cfg(url: str, password: str = "Clave-de-prueba-2026") -> Config:
    return Config(url=url, email="admin@crm.cl", password=password, db_host="postgres", db_port=5432)


def _run(url, settings, marcas=MARCAS, **kw):
    lines = []
    informe = provisionar(_cfg(url, **kw), settings, marcas, salida=lines.append)
    return informe, lines


def _template(path: str) -> str:
    return re.sub(r"/\d+", "/:id", path)


def _compress(calls) -> list[tuple[str, str, int]]:
    """Consecutive identical (method, path template) calls as one entry with a count."""
    out: list[list] = []
    for method, path, _status, _changed in calls:
        key = (method, _template(path))
        if out and out[-1][:2] == list(key):
            out[-1][2] += 1
        else:
            out.append([*key, 1])
    return [tuple(x) for x in out]


# ---------------------------------------------------------------- the fake is strict
def test_fake_refuses_what_metabase_refuses(metabase):
    _, url = metabase
    with httpx.Client(base_url=url) as h:
        assert h.get("/api/database").status_code == 401  # no session header
        props = h.get("/api/session/properties").json()
        assert props["has-user-setup"] is False and props["setup-token"]
        user = {"email": "a@b.cl", "password": "password", "first_name": "A", "last_name": "B"}
        bad = h.post(
            "/api/setup", json={"token": props["setup-token"], "user": user, "prefs": {"site_name": "x"}}
        )
        assert bad.status_code == 400 and bad.json()["errors"] == {"password": "password is too common."}
        assert (
            h.post(
                "/api/setup",
                json={
                    "token": "otro",
                    "user": {**user, "password": "Muy-segura-1"},
                    "prefs": {"site_name": "x"},
                },
            ).status_code
            == 400
        )
        ok = h.post(
            "/api/setup",
            json={
                "token": props["setup-token"],
                "user": {**user, "password": "Muy-segura-1"},
                "prefs": {"site_name": "x"},
            },
        )
        assert ok.status_code == 200
        s = {"X-Metabase-Session": ok.json()["id"]}
        assert h.get("/api/session/properties").json()["setup-token"] is None
        again = h.post(
            "/api/setup", json={"token": props["setup-token"], "user": user, "prefs": {"site_name": "x"}}
        )
        assert again.status_code in (400, 403)
        unknown = h.post("/api/collection", json={"name": "x", "color": "#509EE3"}, headers=s)
        assert unknown.status_code == 400 and "color" in unknown.json()["errors"]
        assert (
            h.post("/api/card", json={"name": "x"}, headers=s).status_code == 400
        )  # dataset_query & co. missing
        g = h.get("/api/permissions/graph", headers=s).json()
        assert (
            h.put(
                "/api/permissions/graph", json={"revision": g["revision"] - 1, "groups": {}}, headers=s
            ).status_code
            == 409
        )
        assert (
            h.put(
                "/api/permissions/graph", json={"revision": g["revision"], "groups": {"2": {}}}, headers=s
            ).status_code
            == 400
        )  # Administrators
        assert h.post("/api/session", json={"username": "a@b.cl", "password": "no"}).status_code == 401


# ---------------------------------------------------------------- provisioning
def test_first_run_then_a_second_run_that_changes_nothing(metabase, settings):
    fake, url = metabase
    informe, lines = _run(url, settings)
    conns = provision.conexiones(settings, _cfg(url), MARCAS)
    n = len(conns)
    assert n == 3

    # the call sequence: setup, connections, groups, collections, permissions, cards, dashboards
    expected = [("GET", "/api/session/properties", 1), ("POST", "/api/setup", 1), ("GET", "/api/database", 1)]
    expected += [("POST", "/api/database", 1), ("PUT", "/api/database/:id", 1)] * n
    expected += [
        ("GET", "/api/permissions/group", 1),
        ("POST", "/api/permissions/group", n),
        ("GET", "/api/collection", 1),
        ("POST", "/api/collection", n),
        ("GET", "/api/permissions/graph", 1),
        ("PUT", "/api/permissions/graph", 1),
        ("GET", "/api/collection/graph", 1),
        ("PUT", "/api/collection/graph", 1),
        ("GET", "/api/card", 1),
        ("POST", "/api/card", n * N_CARDS),
    ]
    for _ in range(n):
        expected.append(("GET", "/api/collection/:id/items", 1))
        expected += [
            ("POST", "/api/dashboard", 1),
            ("GET", "/api/dashboard/:id", 1),
            ("PUT", "/api/dashboard/:id", 1),
        ] * len(tableros.TABLEROS)
    assert _compress(fake.calls) == expected
    assert all(status == 200 for _, _, status, _ in fake.calls)
    assert informe.cuenta("creado") == 1 + 3 * n + n * N_CARDS + n * len(tableros.TABLEROS)
    assert informe.cuenta("actualizado") == 2  # the two permission graphs
    assert any("creado      conexión" in line and "CRM gollos" in line for line in lines)

    _assert_connections(fake, settings)
    _assert_permissions(fake)
    _assert_cards_and_dashboards(fake)

    # second run: the login, then only reads
    since = len(fake.calls)
    informe2, _ = _run(url, settings)
    assert fake.non_gets(since) == [("POST", "/api/session", 200, False)]  # a login; no content changes
    assert informe2.cuenta("creado") == informe2.cuenta("actualizado") == 0
    assert informe2.cuenta("sin cambios") == 1 + 3 * n + 2 + n * N_CARDS + n * len(tableros.TABLEROS)
    assert (
        informe2.resumen() == "Metabase: 0 creados, 0 actualizados, "
        f"{informe2.cuenta('sin cambios')} sin cambios"
    )


def _assert_connections(fake, settings):
    expected = {
        "CRM ejecutivos (todas las marcas)": roles.EXECUTIVE,
        "CRM gollos": "crm_marca_gollos",
        "CRM goio": "crm_marca_goio",
    }
    assert {d["name"]: d["details"]["user"] for d in fake.dbs.values()} == expected
    for d in fake.dbs.values():
        det = d["details"]
        assert det["password"] == roles.password_for(det["user"], settings)
        assert (det["host"], det["port"], det["dbname"]) == ("postgres", 5432, roles.database_name(settings))
        assert (det["schema-filters-type"], det["schema-filters-patterns"]) == ("inclusion", "reporting")
        assert det["user"] in d["description"] and d["engine"] == "postgres"


def _assert_permissions(fake):
    dbs = {name: fake.db_id(name) for name in ("CRM ejecutivos (todas las marcas)", "CRM gollos", "CRM goio")}
    cols = {name: fake.collection_id(name) for name in ("Ejecutivos", "Marca gollos", "Marca goio")}
    own = {
        "Ejecutivos": "CRM ejecutivos (todas las marcas)",
        "Marca gollos": "CRM gollos",
        "Marca goio": "CRM goio",
    }
    for group, own_db in own.items():
        g = fake.group_id(group)
        queries = {name: fake.data_graph[g][d]["create-queries"] for name, d in dbs.items()}
        assert queries == {name: "query-builder-and-native" if name == own_db else "no" for name in dbs}, (
            group
        )
        readable = {name for name, c in cols.items() if fake.coll_graph[g][c] != "none"}
        assert readable == (set(cols) if group == "Ejecutivos" else {group}), group
        assert all(fake.coll_graph[g][c] == "read" for name, c in cols.items() if name in readable)
        assert fake.coll_graph[g]["root"] == "none"
    assert {fake.data_graph[ALL_USERS][d]["create-queries"] for d in dbs.values()} == {"no"}
    assert {fake.coll_graph[ALL_USERS][c] for c in cols.values()} == {"none"}
    assert fake.coll_graph[ALL_USERS]["root"] == "none"
    # the Administrators group is left as Metabase has it
    assert {fake.data_graph[ADMINS][d]["create-queries"] for d in dbs.values()} == {
        "query-builder-and-native"
    }


def _assert_cards_and_dashboards(fake):
    for col_name, db_name, executive in (
        ("Ejecutivos", "CRM ejecutivos (todas las marcas)", True),
        ("Marca gollos", "CRM gollos", False),
        ("Marca goio", "CRM goio", False),
    ):
        cid, did = fake.collection_id(col_name), fake.db_id(db_name)
        cards = {c["name"]: c for c in fake.cards.values() if c["collection_id"] == cid}
        assert len(cards) == N_CARDS
        for tablero, t in tableros.tarjetas():
            card = cards[t.nombre]
            q = card["dataset_query"]
            assert q["database"] == did and q["native"]["query"] == t.sql_para(executive)
            assert ("marca" in q["native"]["template-tags"]) is executive
            assert q["native"]["template-tags"]["desde"]["type"] == "date"
        dashboards = [d for d in fake.dashboards.values() if d["collection_id"] == cid]
        assert sorted(d["name"] for d in dashboards) == sorted(t.nombre for t in tableros.TABLEROS)
        for d in dashboards:
            tablero = next(t for t in tableros.TABLEROS if t.nombre == d["name"])
            assert [p["id"] for p in d["parameters"]] == (
                ["desde", "hasta", "marca"] if executive else ["desde", "hasta"]
            )
            assert len(d["dashcards"]) == len(tablero.tarjetas)
            for dc in d["dashcards"]:
                assert fake.cards[dc["card_id"]]["collection_id"] == cid  # never another brand's card
                assert {pm["parameter_id"] for pm in dc["parameter_mappings"]} == {
                    p["id"] for p in d["parameters"]
                }
            if executive:
                marca = next(p for p in d["parameters"] if p["id"] == "marca")
                assert marca["values_source_config"]["values"] == ["gollos", "goio"]


def test_drift_is_repaired_and_only_it(metabase, settings):
    """Someone edits Metabase by hand: the next run puts back exactly what differs."""
    fake, url = metabase
    _run(url, settings)
    gollos, goio = fake.group_id("Marca gollos"), fake.group_id("Marca goio")
    card = next(
        c
        for c in fake.cards.values()
        if c["collection_id"] == fake.collection_id("Marca goio") and c["name"] == "Ingresos por marca y mes"
    )
    card["dataset_query"]["native"]["query"] = "SELECT * FROM crm.clientes"  # a hand edit
    fake.data_graph[ALL_USERS][fake.db_id("CRM gollos")]["create-queries"] = "query-builder-and-native"
    fake.coll_graph[gollos][fake.collection_id("Marca goio")] = "read"
    dash = next(
        d
        for d in fake.dashboards.values()
        if d["collection_id"] == fake.collection_id("Marca gollos") and d["name"] == "Operaciones"
    )
    dash["dashcards"].pop()  # a card removed from a dashboard

    since = len(fake.calls)
    informe, _ = _run(url, settings)
    changes = [(m, _template(p)) for m, p, _, changed in fake.non_gets(since) if changed]
    assert sorted(changes) == sorted(
        [
            ("PUT", "/api/permissions/graph"),
            ("PUT", "/api/collection/graph"),
            ("PUT", "/api/card/:id"),
            ("PUT", "/api/dashboard/:id"),
        ]
    )
    assert informe.cuenta("creado") == 0 and informe.cuenta("actualizado") == 4
    assert "crm.clientes" not in card["dataset_query"]["native"]["query"]
    assert fake.cards[card["id"]]["dataset_query"]["native"]["query"].startswith("SELECT marca")
    _assert_permissions(fake)
    _assert_cards_and_dashboards(fake)
    assert fake.coll_graph[goio][fake.collection_id("Marca gollos")] == "none"

    since = len(fake.calls)
    _run(url, settings)
    assert fake.non_gets(since) == [("POST", "/api/session", 200, False)]


def test_a_new_brand_and_a_rotated_secret(metabase, settings):
    fake, url = metabase
    _run(url, settings, marcas=MARCAS[:1])
    assert len(fake.dbs) == 2
    rotated = dataclasses.replace(settings, secret_key="otro-secreto")
    since = len(fake.calls)
    informe, _ = _run(url, rotated)
    # every password changes (the description's fingerprint says so); goio arrives whole
    assert [(m, _template(p)) for m, p, _, _ in fake.non_gets(since)][:4] == [
        ("POST", "/api/session"),
        ("PUT", "/api/database/:id"),
        ("PUT", "/api/database/:id"),
        ("POST", "/api/database"),
    ]
    assert informe.cuenta("actualizado") >= 2
    for d in fake.dbs.values():
        assert d["details"]["password"] == roles.password_for(d["details"]["user"], rotated)
    _assert_connections(fake, rotated)
    _assert_permissions(fake)
    _assert_cards_and_dashboards(fake)
    # the executives' brand filter now lists goio too
    ex = fake.collection_id("Ejecutivos")
    for d in fake.dashboards.values():
        if d["collection_id"] == ex:
            assert next(p for p in d["parameters"] if p["id"] == "marca")["values_source_config"][
                "values"
            ] == ["gollos", "goio"]


def test_wrong_admin_password_is_a_clear_error(metabase, settings):
    _, url = metabase
    _run(url, settings)
    with pytest.raises(MetabaseError, match="METABASE_ADMIN_PASSWORD"):
        _run(url, settings, password="otra-clave-2026")


# ---------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def crm_two_brands(settings):
    """A database with two brands, for the command line (it reads brands and refreshes)."""
    from sqlalchemy import create_engine

    from api.services import marcas

    name = f"{settings.db_name}_mbprov"
    installer.drop_database(settings, name)
    installer.create_database(settings, name)
    installer.install(settings, database=name)
    s = dataclasses.replace(
        settings, database_url=roles.with_database(roles.admin_url(settings), name), db_name=name
    )
    engine = create_engine(roles.sqlalchemy_url(roles.role_url(roles.API, s)))
    with engine.begin() as conn:
        marcas.create(conn, s, "gollos", "Gollos Chicken's")
        marcas.create(conn, s, "goio", "Goio Store")
    engine.dispose()
    yield s
    installer.drop_database(settings, name)


def test_command_line(metabase, crm_two_brands):
    fake, url = metabase
    s = crm_two_brands
    env = {
        **os.environ,
        "METABASE_URL": url,
        "METABASE_ADMIN_EMAIL": "admin@crm.cl",
        "METABASE_ADMIN_PASSWORD": "Clave-de-prueba-2026",
        "METABASE_DB_HOST": "postgres",
        "DATABASE_URL": s.database_url,
        "CRM_SECRET_KEY": s.secret_key,
        "PYTHONPATH": str(ROOT),
    }
    env["METABASE_DB_PORT"] = ""  # empty: the CRM's port (and .env cannot fill it in)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "metabase.provision", *args],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = run("--esperar", "10")
    assert r.returncode == 0, r.stderr
    assert "creado      conexión               CRM gollos" in r.stdout
    assert "refrescado  resumen" in r.stdout and "pedidos_dia: 0 filas" in r.stdout
    assert f"Metabase: {1 + 3 * 3 + 3 * N_CARDS + 3 * 4} creados, 2 actualizados" in r.stdout
    det = fake.dbs[fake.db_id("CRM goio")]["details"]
    assert (det["host"], det["user"], det["password"]) == (
        "postgres",
        "crm_marca_goio",
        roles.password_for("crm_marca_goio", s),
    )
    assert det["port"] == urlsplit(s.database_url).port  # METABASE_DB_PORT unset: the CRM's port

    r = run("--sin-refrescar", "--json")
    assert r.returncode == 0, r.stderr
    assert "Metabase: 0 creados, 0 actualizados" in r.stdout
    assert "refrescado" not in r.stdout
    hecho = json.loads(r.stdout.strip().splitlines()[-1])
    assert {x["accion"] for x in hecho} == {"sin cambios"}

    env["METABASE_ADMIN_PASSWORD"] = "equivocada-123"
    r = run("--sin-refrescar")
    assert r.returncode == 1 and "error: No se pudo iniciar sesión como admin@crm.cl" in r.stderr
