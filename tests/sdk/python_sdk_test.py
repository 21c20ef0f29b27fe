"""HubSpot's official Python SDK (`hubspot-api-client`) against a real hubspot-sim binary.

Strict client-side validation is on, so every model the SDK builds from an answer checks its
required fields and enums. Each raw success body is also walked against the SDK's model for that
status: a key the model does not know, or a value of the wrong JSON type, fails the call.

Run: .cache/venv/bin/python tests/sdk/python_sdk_test.py (scripts/test.sh does).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
import uuid

from urllib3.util.retry import Retry

from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicGdprDeleteInput,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate, PropertyGroupUpdate, PropertyUpdate

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("HUBSPOT_SIM_BIN", os.path.join(ROOT, "target", "debug", "hubspot-sim"))
TOKEN = "pat-na1-sdk-token"
SIM = {}


def setUpModule():
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [BIN, "--addr", "127.0.0.1:0", "--token", TOKEN, "--rate-limit", "0"],
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    line = proc.stdout.readline()
    m = re.search(r"listening on (http://\S+)", line)
    if not m:
        proc.kill()
        proc.wait()
        err.seek(0)
        raise RuntimeError(f"hubspot-sim did not say where it listens: {line!r} {err.read()!r}")
    SIM.update(proc=proc, url=m.group(1), err=err)


def tearDownModule():
    SIM["proc"].terminate()
    SIM["proc"].wait(10)
    SIM["proc"].stdout.close()
    SIM["err"].close()


def sim_post(path, body=None, method="POST"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(SIM["url"] + path, data=data, method=method)
    with urllib.request.urlopen(req) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def client(token=TOKEN, retry=None):
    return HubSpot(
        access_token=token,
        host=SIM["url"],
        base_url=SIM["url"],
        client_side_validation=True,
        retry=retry,
    )


# --- the raw-body check ---------------------------------------------------------------------------

JSON_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object}


def walk(value, type_name, models, where, strict=True):
    """Checks a decoded JSON value against an OpenAPI type name of the SDK (`list[X]`, `dict(str, X)`,
    a primitive, `datetime`, or a model class). Returns a list of problems."""
    if value is None:
        return []
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        out = []
        for i, v in enumerate(value):
            out += walk(v, m.group(1), models, f"{where}[{i}]", strict)
        return out
    m = re.fullmatch(r"dict[\[(]([^,]+), (.+)[\])]", type_name)
    if m:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        out = []
        for k, v in value.items():
            out += walk(v, m.group(2), models, f"{where}.{k}", strict)
        return out
    if type_name in ("datetime", "date"):
        ok = isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d))?", value)
        return [] if ok else [f"{where}: expected an ISO date-time, got {value!r}"]
    if type_name in JSON_TYPES:
        t = JSON_TYPES[type_name]
        if type_name in ("int", "float") and isinstance(value, bool):
            return [f"{where}: expected a number, got {value!r}"]
        return [] if isinstance(value, t) else [f"{where}: expected {type_name}, got {value!r}"]
    klass = getattr(models, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} object, got {value!r}"]
    known = {v: k for k, v in klass.attribute_map.items()}
    out = []
    for key, v in value.items():
        if key not in known:
            if strict:
                out.append(f"{where}.{key}: not a field of {type_name}")
        else:
            out += walk(v, klass.openapi_types[known[key]], models, f"{where}.{key}", strict)
    return out


def raw_check(test, api, models, type_name):
    """The last answer `api` received, walked against `type_name` and built as that model."""
    raw = api.api_client.last_response
    body = json.loads(raw.data)
    problems = walk(body, type_name, models, type_name)
    test.assertEqual(problems, [], f"raw body {raw.status}: {raw.data[:400]!r}")
    # Build the model from the raw body with strict validation (raises on a missing required field).
    api.api_client.deserialize(raw, type_name)
    return body


def error_body(test, exc, status):
    """An ApiException's body: HubSpot's error JSON, built as the SDK's `Error` model."""
    test.assertEqual(exc.status, status, exc.body)
    body = json.loads(exc.body)
    from hubspot.crm.contacts import models

    # HubSpot's error JSON has fields the SDK's `Error` model lacks (`status`, and `policyName` etc.
    # on 429s), so unknown keys pass here; the known ones must have the model's types.
    problems = walk(body, "Error", models, "Error", strict=False)
    test.assertEqual(problems, [], exc.body)

    class R:  # what ApiClient.deserialize reads
        data = exc.body

    client().crm.contacts.basic_api.api_client.deserialize(R, "Error")
    return body


def uniq(prefix="c"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


class Base(unittest.TestCase):
    def setUp(self):
        sim_post("/__sim/reset")
        sim_post("/__sim/config", {"rateLimit": 0})
        self.hs = client()
        from hubspot.crm.contacts import models as cm
        from hubspot.crm.properties import models as pm

        self.cm, self.pm = cm, pm
        self.basic = self.hs.crm.contacts.basic_api
        self.batch = self.hs.crm.contacts.batch_api
        self.search = self.hs.crm.contacts.search_api

    def create(self, **props):
        props.setdefault("email", uniq())
        return self.basic.create(SimplePublicObjectInputForCreate(properties=props))


class Basic(Base):
    def test_create(self):
        c = self.create(email="ann@example.com", firstname="Ann", lastname="Lee")
        body = raw_check(self, self.basic, self.cm, "SimplePublicObject")
        self.assertEqual(self.basic.api_client.last_response.status, 201)
        self.assertEqual((c.properties["email"], c.properties["firstname"]), ("ann@example.com", "Ann"))
        self.assertFalse(c.archived)
        self.assertEqual(body["id"], c.id)

    def test_get_by_id_with_several_properties(self):
        c = self.create(firstname="Ann", lastname="Lee")
        got = self.basic.get_by_id(c.id, properties=["email", "firstname", "lastname"])
        raw_check(self, self.basic, self.cm, "SimplePublicObjectWithAssociations")
        self.assertEqual(got.properties["firstname"], "Ann")
        self.assertEqual(got.properties["lastname"], "Lee")
        self.assertEqual(got.properties["email"], c.properties["email"])

    def test_get_by_email(self):
        c = self.create(email="bob@example.com")
        got = self.basic.get_by_id("bob@example.com", id_property="email", properties=["email"])
        raw_check(self, self.basic, self.cm, "SimplePublicObjectWithAssociations")
        self.assertEqual(got.id, c.id)

    def test_get_by_unique_property(self):
        self.hs.crm.properties.core_api.create(
            "contacts",
            PropertyCreate(name="app_user_id", label="App user id", type="string", field_type="text",
                           group_name="contactinformation", has_unique_value=True),
        )
        c = self.create(app_user_id="u-42")
        got = self.basic.get_by_id("u-42", id_property="app_user_id", properties=["app_user_id", "email"])
        raw_check(self, self.basic, self.cm, "SimplePublicObjectWithAssociations")
        self.assertEqual((got.id, got.properties["app_user_id"]), (c.id, "u-42"))

    def test_get_missing_is_404(self):
        with self.assertRaises(ApiException) as e:
            self.basic.get_by_id("999999")
        self.assertEqual(error_body(self, e.exception, 404)["category"], "OBJECT_NOT_FOUND")

    def test_update(self):
        c = self.create(firstname="Ann")
        up = self.basic.update(c.id, SimplePublicObjectInput(properties={"firstname": "Anna", "city": "Oslo"}))
        raw_check(self, self.basic, self.cm, "SimplePublicObject")
        self.assertEqual((up.properties["firstname"], up.properties["city"]), ("Anna", "Oslo"))

    def test_update_by_email(self):
        c = self.create(email="upd@example.com")
        up = self.basic.update("upd@example.com", SimplePublicObjectInput(properties={"lastname": "Z"}), id_property="email")
        raw_check(self, self.basic, self.cm, "SimplePublicObject")
        self.assertEqual((up.id, up.properties["lastname"]), (c.id, "Z"))

    def test_archive_then_read_archived(self):
        c = self.create()
        self.assertIsNone(self.basic.archive(c.id))
        self.assertEqual(self.basic.api_client.last_response.status, 204)
        with self.assertRaises(ApiException) as e:
            self.basic.get_by_id(c.id)
        error_body(self, e.exception, 404)
        got = self.basic.get_by_id(c.id, archived=True)
        raw_check(self, self.basic, self.cm, "SimplePublicObjectWithAssociations")
        self.assertTrue(got.archived)
        self.assertIsNotNone(got.archived_at)

    def test_list_with_paging(self):
        ids = {self.create().id for _ in range(5)}
        page = self.basic.get_page(limit=2, properties=["email", "firstname"])
        raw_check(self, self.basic, self.cm, "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging")
        seen = [r.id for r in page.results]
        self.assertEqual(len(seen), 2)
        while page.paging and page.paging.next:
            page = self.basic.get_page(limit=2, after=page.paging.next.after)
            raw_check(self, self.basic, self.cm, "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging")
            seen += [r.id for r in page.results]
        self.assertEqual(set(seen), ids)
        self.assertEqual(len(seen), len(ids))

    def test_list_archived(self):
        keep, gone = self.create(), self.create()
        self.basic.archive(gone.id)
        page = self.basic.get_page(archived=True)
        raw_check(self, self.basic, self.cm, "CollectionResponseSimplePublicObjectWithAssociationsForwardPaging")
        self.assertEqual([r.id for r in page.results], [gone.id])
        self.assertTrue(page.results[0].archived)
        self.assertEqual([r.id for r in self.basic.get_page().results], [keep.id])

    def test_create_existing_email_is_409_with_existing_id(self):
        c = self.create(email="dup@example.com")
        with self.assertRaises(ApiException) as e:
            self.create(email="dup@example.com")
        body = error_body(self, e.exception, 409)
        self.assertEqual(body["category"], "CONFLICT")
        self.assertTrue(body["message"].endswith(f"Existing ID: {c.id}"), body["message"])

    def test_bad_token_is_401(self):
        with self.assertRaises(ApiException) as e:
            client(token="pat-na1-wrong").crm.contacts.basic_api.get_page()
        body = error_body(self, e.exception, 401)
        self.assertEqual(body["category"], "INVALID_AUTHENTICATION")
        self.assertIn("x-hubspot-auth-failure", {k.lower() for k in e.exception.headers.keys()})

    def test_gdpr_delete(self):
        c = self.create(email="gdpr@example.com")
        self.assertIsNone(self.basic.purge(PublicGdprDeleteInput(object_id="gdpr@example.com", id_property="email")))
        self.assertEqual(self.basic.api_client.last_response.status, 204)
        with self.assertRaises(ApiException) as e:
            self.basic.get_by_id(c.id)
        error_body(self, e.exception, 404)
        with self.assertRaises(ApiException):
            self.basic.get_by_id(c.id, archived=True)

    def test_merge_and_read_merged_away_id(self):
        a, b = self.create(firstname="A"), self.create(lastname="B")
        m = self.basic.merge(PublicMergeInput(primary_object_id=a.id, object_id_to_merge=b.id))
        raw_check(self, self.basic, self.cm, "SimplePublicObject")
        self.assertEqual(m.properties["email"], a.properties["email"])
        got = self.basic.get_by_id(b.id, properties=["email", "lastname"])
        raw_check(self, self.basic, self.cm, "SimplePublicObjectWithAssociations")
        self.assertEqual((got.id, got.properties["lastname"]), (m.id, "B"))


class Batch(Base):
    def test_batch_create(self):
        res = self.batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
            SimplePublicObjectBatchInputForCreate(properties={"email": uniq(), "firstname": "X"}) for _ in range(3)
        ]))
        raw_check(self, self.batch, self.cm, "BatchResponseSimplePublicObject")
        self.assertEqual(self.batch.api_client.last_response.status, 201)
        self.assertEqual((res.status, len(res.results)), ("COMPLETE", 3))

    def test_batch_read_with_a_missing_id(self):
        a, b = self.create(firstname="A"), self.create(firstname="B")
        res = self.batch.read(BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=a.id), SimplePublicObjectId(id="999999"), SimplePublicObjectId(id=b.id)],
            properties=["email", "firstname"], properties_with_history=[],
        ))
        raw_check(self, self.batch, self.cm, "BatchResponseSimplePublicObjectWithErrors")
        self.assertEqual(self.batch.api_client.last_response.status, 207)
        self.assertEqual(sorted(r.id for r in res.results), sorted([a.id, b.id]))
        self.assertEqual(res.num_errors, 1)
        self.assertEqual(res.errors[0].category, "OBJECT_NOT_FOUND")
        self.assertEqual(res.errors[0].context["ids"], ["999999"])

    def test_batch_read_by_email(self):
        a = self.create(email="r1@example.com")
        res = self.batch.read(BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id="r1@example.com")], properties=["email"],
            properties_with_history=[], id_property="email",
        ))
        raw_check(self, self.batch, self.cm, "BatchResponseSimplePublicObject")
        self.assertEqual([r.id for r in res.results], [a.id])

    def test_batch_update_mixed(self):
        a = self.create()
        res = self.batch.update(BatchInputSimplePublicObjectBatchInput(inputs=[
            SimplePublicObjectBatchInput(id=a.id, properties={"firstname": "New"}),
            SimplePublicObjectBatchInput(id="999999", properties={"firstname": "Nobody"}),
        ]))
        raw_check(self, self.batch, self.cm, "BatchResponseSimplePublicObjectWithErrors")
        self.assertEqual(self.batch.api_client.last_response.status, 207)
        self.assertEqual([(r.id, r.properties["firstname"]) for r in res.results], [(a.id, "New")])
        self.assertEqual(res.errors[0].context["ids"], ["999999"])

    def test_batch_upsert(self):
        a = self.create(email="up1@example.com")
        res = self.batch.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
            SimplePublicObjectBatchInputUpsert(id="up1@example.com", id_property="email", properties={"firstname": "Old"}),
            SimplePublicObjectBatchInputUpsert(id="up2@example.com", id_property="email", properties={"firstname": "New"}),
        ]))
        raw_check(self, self.batch, self.cm, "BatchResponseSimplePublicUpsertObject")
        by_email = {r.properties["email"]: r for r in res.results}
        self.assertEqual((by_email["up1@example.com"].id, by_email["up1@example.com"].new), (a.id, False))
        self.assertTrue(by_email["up2@example.com"].new)

    def test_batch_archive(self):
        a, b = self.create(), self.create()
        self.assertIsNone(self.batch.archive(BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=a.id), SimplePublicObjectId(id=b.id)])))
        self.assertEqual(self.batch.api_client.last_response.status, 204)
        self.assertEqual(self.basic.get_page().results, [])


class Search(Base):
    def setUp(self):
        super().setUp()
        self.people = [self.create(email=f"s{i}@example.com", firstname=f"F{i}", lastname="Same") for i in range(5)]

    def do(self, **kw):
        res = self.search.do_search(PublicObjectSearchRequest(**kw))
        raw_check(self, self.search, self.cm, "CollectionResponseWithTotalSimplePublicObjectForwardPaging")
        return res

    def test_eq(self):
        res = self.do(filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="EQ", value="s3@example.com")])])
        self.assertEqual((res.total, [r.id for r in res.results]), (1, [self.people[3].id]))
        self.assertEqual(res.results[0].properties["firstname"], "F3")

    def test_in(self):
        res = self.do(
            filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="IN", values=["s1@example.com", "s4@example.com"])])],
            properties=["email"],
        )
        self.assertEqual(sorted(r.properties["email"] for r in res.results), ["s1@example.com", "s4@example.com"])

    def test_sorts_and_paging(self):
        f = [FilterGroup(filters=[Filter(property_name="lastname", operator="EQ", value="Same")])]
        first = self.do(filter_groups=f, sorts=["-firstname"], limit=2, properties=["firstname"])
        self.assertEqual(first.total, 5)
        self.assertEqual([r.properties["firstname"] for r in first.results], ["F4", "F3"])
        rest = self.do(filter_groups=f, sorts=["-firstname"], limit=10, after=first.paging.next.after, properties=["firstname"])
        self.assertEqual([r.properties["firstname"] for r in rest.results], ["F2", "F1", "F0"])
        self.assertIsNone(rest.paging)

    def test_five_per_second_limit(self):
        sim_post("/__sim/config", {"rateLimit": 100})
        req = PublicObjectSearchRequest(filter_groups=[], limit=1)
        for _ in range(40):
            try:
                self.search.do_search(req)
            except ApiException as e:
                self.assertEqual(e.status, 429)
                body = json.loads(e.body)
                self.assertEqual(body["message"], "You have reached your secondly limit.")
                self.assertEqual(body["status"], "error")
                break
        else:
            self.fail("40 searches in a row were never limited")
        ok = 0
        start = time.monotonic()
        # Within the first second after a 429 no more than 5 searches get through.
        while time.monotonic() - start < 0.5:
            try:
                self.search.do_search(req)
                ok += 1
            except ApiException as e:
                self.assertEqual(e.status, 429)
        self.assertLessEqual(ok, 5)


class Errors(Base):
    def fault(self, path, status=429, count=1):
        sim_post("/__sim/faults", {"path": path, "status": status, "count": count})

    def test_ten_secondly_429_body(self):
        self.fault("/crm/v3/objects/contacts")
        with self.assertRaises(ApiException) as e:
            self.basic.get_page()
        self.assertEqual(e.exception.status, 429)
        body = json.loads(e.exception.body)
        self.assertEqual((body["policyName"], body["errorType"]), ("TEN_SECONDLY_ROLLING", "RATE_LIMIT"))
        self.assertEqual(body["message"], "You have reached your ten_secondly_rolling limit.")

    def test_search_429_body_is_the_secondly_one(self):
        self.fault("/crm/v3/objects/contacts/search")
        with self.assertRaises(ApiException) as e:
            self.search.do_search(PublicObjectSearchRequest(filter_groups=[]))
        self.assertEqual(e.exception.status, 429)
        self.assertEqual(json.loads(e.exception.body)["message"], "You have reached your secondly limit.")

    def test_sdk_retry_honours_429(self):
        c = self.create()
        self.fault("/crm/v3/objects/contacts/", count=2)
        retry = Retry(total=3, status_forcelist=(429,), allowed_methods=None, backoff_factor=0.1, raise_on_status=False)
        got = client(retry=retry).crm.contacts.basic_api.get_by_id(c.id)
        self.assertEqual(got.id, c.id)
        calls = json.loads(urllib.request.urlopen(SIM["url"] + "/__sim/stats").read())["calls"]
        self.assertEqual(calls.get("GET /crm/v3/objects/contacts/{id} 429"), 2, calls)

    def test_sdk_retry_honours_the_search_429(self):
        self.create(email="found@example.com")
        self.fault("/crm/v3/objects/contacts/search", count=1)
        retry = Retry(total=3, status_forcelist=(429,), allowed_methods=None, backoff_factor=0.1, raise_on_status=False)
        res = client(retry=retry).crm.contacts.search_api.do_search(PublicObjectSearchRequest(filter_groups=[
            FilterGroup(filters=[Filter(property_name="email", operator="EQ", value="found@example.com")])
        ]))
        self.assertEqual(res.total, 1)
        calls = json.loads(urllib.request.urlopen(SIM["url"] + "/__sim/stats").read())["calls"]
        self.assertEqual(calls.get("POST /crm/v3/objects/contacts/search 429"), 1, calls)

    def test_unserved_call_answers_json(self):
        r = self.hs.api_request({"method": "PUT", "path": "/crm/v3/objects/contacts/1", "body": {}})
        self.assertIn(r.status_code, (404, 405))
        body = r.json()
        self.assertEqual(body["status"], "error")
        self.assertTrue(body["message"] and body["correlationId"] and body["category"], body)


class Properties(Base):
    def setUp(self):
        super().setUp()
        self.core = self.hs.crm.properties.core_api
        self.groups = self.hs.crm.properties.groups_api

    def new(self, name="favorite_color", **kw):
        return self.core.create("contacts", PropertyCreate(name=name, label="Favorite color", type="string",
                                                            field_type="text", group_name="contactinformation", **kw))

    def test_create(self):
        p = self.new(description="What they like")
        raw_check(self, self.core, self.pm, "ModelProperty")
        self.assertEqual(self.core.api_client.last_response.status, 201)
        self.assertEqual((p.name, p.description, p.has_unique_value), ("favorite_color", "What they like", False))

    def test_read(self):
        self.new()
        p = self.core.get_by_name("contacts", "favorite_color")
        raw_check(self, self.core, self.pm, "ModelProperty")
        self.assertEqual(p.label, "Favorite color")
        email = self.core.get_by_name("contacts", "email")
        raw_check(self, self.core, self.pm, "ModelProperty")
        self.assertTrue(email.hubspot_defined)

    def test_list(self):
        self.new()
        all_ = self.core.get_all("contacts")
        raw_check(self, self.core, self.pm, "CollectionResponsePropertyNoPaging")
        names = {p.name for p in all_.results}
        self.assertTrue({"email", "firstname", "favorite_color"} <= names, names)

    def test_update(self):
        self.new()
        p = self.core.update("contacts", "favorite_color", PropertyUpdate(label="Colour", description="Changed"))
        raw_check(self, self.core, self.pm, "ModelProperty")
        self.assertEqual((p.label, p.description), ("Colour", "Changed"))
        self.assertEqual(self.core.get_by_name("contacts", "favorite_color").label, "Colour")

    def test_archive(self):
        self.new()
        self.assertIsNone(self.core.archive("contacts", "favorite_color"))
        self.assertEqual(self.core.api_client.last_response.status, 204)
        with self.assertRaises(Exception) as e:
            self.core.get_by_name("contacts", "favorite_color")
        self.assertEqual(e.exception.status, 404)

    def test_groups(self):
        g = self.groups.create("contacts", PropertyGroupCreate(name="app_info", label="App info", display_order=3))
        raw_check(self, self.groups, self.pm, "PropertyGroup")
        self.assertEqual((g.name, g.label, g.archived), ("app_info", "App info", False))
        all_ = self.groups.get_all("contacts")
        raw_check(self, self.groups, self.pm, "CollectionResponsePropertyGroupNoPaging")
        self.assertIn("contactinformation", {x.name for x in all_.results})
        got = self.groups.get_by_name("contacts", "app_info")
        raw_check(self, self.groups, self.pm, "PropertyGroup")
        self.assertEqual(got.display_order, 3)
        up = self.groups.update("contacts", "app_info", PropertyGroupUpdate(label="Application"))
        raw_check(self, self.groups, self.pm, "PropertyGroup")
        self.assertEqual(up.label, "Application")
        self.assertIsNone(self.groups.archive("contacts", "app_info"))
        with self.assertRaises(Exception) as e:
            self.groups.get_by_name("contacts", "app_info")
        self.assertEqual(e.exception.status, 404)


class Legacy(Base):
    def test_v1_create_or_update_and_profile(self):
        r = self.hs.api_request({
            "method": "POST", "path": "/contacts/v1/contact/createOrUpdate/email/v1@example.com",
            "body": {"properties": [{"property": "firstname", "value": "V"}]},
        })
        self.assertEqual(r.status_code, 200, r.text)
        self.assertTrue(r.json()["isNew"])
        vid = r.json()["vid"]
        p = self.hs.api_request({"method": "GET", "path": "/contacts/v1/contact/email/v1@example.com/profile"})
        self.assertEqual(p.status_code, 200, p.text)
        self.assertEqual((p.json()["vid"], p.json()["properties"]["firstname"]["value"]), (vid, "V"))
        u = self.hs.api_request({
            "method": "POST", "path": f"/contacts/v1/contact/vid/{vid}/profile",
            "body": {"properties": [{"property": "lastname", "value": "W"}]},
        })
        self.assertEqual(u.status_code, 204, u.text)
        self.assertEqual(self.basic.get_by_id(str(vid), properties=["lastname"]).properties["lastname"], "W")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"python-sdk: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
