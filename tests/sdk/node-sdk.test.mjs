// HubSpot's official Node SDK (@hubspot/api-client 13.x) against a real hubspot-sim binary, with
// `basePath` at the simulator. Each test is one SDK call (or a call and its follow-up read); the
// answers are the SDK's own models, so a field the simulator names or types wrongly shows here.
import test, { before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import hubspot from "@hubspot/api-client";
import { startSim } from "../e2e/helpers.mjs";

const { Client } = hubspot;
let sim;
let hs;
const simPost = (path, body) =>
  fetch(sim.url + path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) }).then((r) => r.status);
const client = (opts = {}) => new Client({ accessToken: "T", basePath: sim.url, ...opts });
const fault = (path, count = 1) => simPost("/__sim/faults", { path, status: 429, count });
let n = 0;
const email = () => `n${++n}-${process.pid}@example.com`;
const create = (properties = {}) =>
  hs.crm.contacts.basicApi.create({ properties: { email: email(), ...properties }, associations: [] });

/** The error an SDK call rejects with. */
async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail("the call succeeded");
}

before(async () => {
  sim = await startSim();
});
after(async () => {
  await sim?.stop();
});
beforeEach(async () => {
  await simPost("/__sim/reset");
  await simPost("/__sim/config", { rateLimit: 0 });
  hs = client();
});

test("basicApi.create answers 201 with a SimplePublicObject", async () => {
  const res = await hs.crm.contacts.basicApi.createWithHttpInfo({ properties: { email: "ann@example.com", firstname: "Ann" }, associations: [] });
  assert.equal(res.httpStatusCode, 201);
  assert.equal(res.data.properties.email, "ann@example.com");
  assert.equal(res.data.properties.firstname, "Ann");
  assert.ok(res.data.createdAt instanceof Date && !Number.isNaN(res.data.createdAt.getTime()));
  assert.equal(res.data.archived, false);
  assert.match(res.data.id, /^\d+$/);
});

test("basicApi.getById with several properties returns them all", async () => {
  const c = await create({ firstname: "Ann", lastname: "Lee" });
  const got = await hs.crm.contacts.basicApi.getById(c.id, ["email", "firstname", "lastname"]);
  assert.equal(got.properties.firstname, "Ann");
  assert.equal(got.properties.lastname, "Lee");
  assert.equal(got.properties.email, c.properties.email);
});

test("basicApi.getById by idProperty=email", async () => {
  const c = await create({ email: "bob@example.com" });
  const got = await hs.crm.contacts.basicApi.getById("bob@example.com", ["email"], undefined, undefined, false, "email");
  assert.equal(got.id, c.id);
});

test("basicApi.getById by a unique property", async () => {
  await hs.crm.properties.coreApi.create("contacts", {
    name: "app_user_id", label: "App user id", type: "string", fieldType: "text", groupName: "contactinformation", hasUniqueValue: true,
  });
  const c = await create({ app_user_id: "u-42" });
  const got = await hs.crm.contacts.basicApi.getById("u-42", ["app_user_id"], undefined, undefined, false, "app_user_id");
  assert.equal(got.id, c.id);
  assert.equal(got.properties.app_user_id, "u-42");
});

test("basicApi.update, by id and by email", async () => {
  const c = await create({ email: "upd@example.com" });
  const a = await hs.crm.contacts.basicApi.update(c.id, { properties: { firstname: "Anna" } });
  assert.equal(a.properties.firstname, "Anna");
  const b = await hs.crm.contacts.basicApi.update("upd@example.com", { properties: { lastname: "Z" } }, "email");
  assert.equal(b.id, c.id);
  assert.equal(b.properties.lastname, "Z");
});

test("basicApi.archive, then getById 404 and getById archived=true", async () => {
  const c = await create();
  const res = await hs.crm.contacts.basicApi.archiveWithHttpInfo(c.id);
  assert.equal(res.httpStatusCode, 204);
  const e = await rejection(hs.crm.contacts.basicApi.getById(c.id));
  assert.equal(e.code, 404);
  assert.equal(e.body.category, "OBJECT_NOT_FOUND");
  const got = await hs.crm.contacts.basicApi.getById(c.id, undefined, undefined, undefined, true);
  assert.equal(got.id, c.id);
  assert.equal(got.archived, true);
  assert.ok(got.archivedAt instanceof Date && !Number.isNaN(got.archivedAt.getTime()));
});

test("basicApi.getPage pages through every contact; archived=true lists archived ones", async () => {
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await create()).id);
  const seen = [];
  let after;
  do {
    const page = await hs.crm.contacts.basicApi.getPage(2, after, ["email"]);
    assert.ok(page.results.length <= 2);
    seen.push(...page.results.map((r) => r.id));
    after = page.paging?.next?.after;
  } while (after);
  assert.deepEqual(seen.sort(), ids.sort());
  await hs.crm.contacts.basicApi.archive(ids[0]);
  const archived = await hs.crm.contacts.basicApi.getPage(10, undefined, undefined, undefined, undefined, true);
  assert.deepEqual(archived.results.map((r) => [r.id, r.archived]), [[ids[0], true]]);
});

test("basicApi.create with an existing email rejects 409 with the Existing ID", async () => {
  const c = await create({ email: "dup@example.com" });
  const e = await rejection(create({ email: "dup@example.com" }));
  assert.equal(e.code, 409);
  assert.equal(e.body.category, "CONFLICT");
  assert.match(e.body.message, new RegExp(`Existing ID: ${c.id}$`));
  assert.ok(e.body.correlationId);
});

test("a wrong token rejects 401 INVALID_AUTHENTICATION", async () => {
  const e = await rejection(client({ accessToken: "wrong" }).crm.contacts.basicApi.getPage());
  assert.equal(e.code, 401);
  assert.equal(e.body.category, "INVALID_AUTHENTICATION");
  assert.ok(e.headers["x-hubspot-auth-failure"]);
});

test("basicApi.merge, then reading the merged-away id answers the survivor", async () => {
  const a = await create({ firstname: "A" });
  const b = await create({ lastname: "B" });
  const m = await hs.crm.contacts.basicApi.merge({ primaryObjectId: a.id, objectIdToMerge: b.id });
  assert.equal(m.properties.email, a.properties.email);
  const got = await hs.crm.contacts.basicApi.getById(b.id, ["lastname"]);
  assert.equal(got.id, m.id);
  assert.equal(got.properties.lastname, "B");
});

test("basicApi.purge (GDPR delete) by email", async () => {
  const c = await create({ email: "gdpr@example.com" });
  const res = await hs.crm.contacts.basicApi.purgeWithHttpInfo({ objectId: "gdpr@example.com", idProperty: "email" });
  assert.equal(res.httpStatusCode, 204);
  assert.equal((await rejection(hs.crm.contacts.basicApi.getById(c.id))).code, 404);
  assert.equal((await rejection(hs.crm.contacts.basicApi.getById(c.id, undefined, undefined, undefined, true))).code, 404);
});

test("batchApi.create", async () => {
  const res = await hs.crm.contacts.batchApi.createWithHttpInfo({
    inputs: [1, 2, 3].map(() => ({ properties: { email: email() }, associations: [] })),
  });
  assert.equal(res.httpStatusCode, 201);
  assert.equal(res.data.status, "COMPLETE");
  assert.equal(res.data.results.length, 3);
  assert.ok(res.data.startedAt instanceof Date && res.data.completedAt instanceof Date);
});

test("batchApi.read with a missing id: 207, results and errors", async () => {
  const a = await create({ firstname: "A" });
  const res = await hs.crm.contacts.batchApi.readWithHttpInfo({
    inputs: [{ id: a.id }, { id: "999999" }], properties: ["email", "firstname"], propertiesWithHistory: [],
  });
  assert.equal(res.httpStatusCode, 207);
  assert.deepEqual(res.data.results.map((r) => [r.id, r.properties.firstname]), [[a.id, "A"]]);
  assert.equal(res.data.numErrors, 1);
  assert.equal(res.data.errors[0].category, "OBJECT_NOT_FOUND");
  assert.deepEqual(res.data.errors[0].context, { ids: ["999999"] });
});

test("batchApi.update with a missing id: 207", async () => {
  const a = await create();
  const res = await hs.crm.contacts.batchApi.updateWithHttpInfo({
    inputs: [{ id: a.id, properties: { firstname: "New" } }, { id: "999999", properties: { firstname: "X" } }],
  });
  assert.equal(res.httpStatusCode, 207);
  assert.deepEqual(res.data.results.map((r) => [r.id, r.properties.firstname]), [[a.id, "New"]]);
  assert.deepEqual(res.data.errors[0].context.ids, ["999999"]);
});

test("batchApi.upsert by email: new true and false", async () => {
  const a = await create({ email: "up1@example.com" });
  const res = await hs.crm.contacts.batchApi.upsert({
    inputs: [
      { id: "up1@example.com", idProperty: "email", properties: { firstname: "Old" } },
      { id: "up2@example.com", idProperty: "email", properties: { firstname: "New" } },
    ],
  });
  const byEmail = Object.fromEntries(res.results.map((r) => [r.properties.email, r]));
  assert.equal(byEmail["up1@example.com"].id, a.id);
  assert.equal(byEmail["up1@example.com"]["_new"] ?? byEmail["up1@example.com"]["new"], false);
  assert.equal(byEmail["up2@example.com"]["_new"] ?? byEmail["up2@example.com"]["new"], true);
});

test("batchApi.archive", async () => {
  const a = await create();
  const res = await hs.crm.contacts.batchApi.archiveWithHttpInfo({ inputs: [{ id: a.id }] });
  assert.equal(res.httpStatusCode, 204);
  assert.deepEqual((await hs.crm.contacts.basicApi.getPage()).results, []);
});

const people = async () => {
  for (let i = 0; i < 5; i++) await create({ email: `s${i}@example.com`, firstname: `F${i}`, lastname: "Same" });
};

test("searchApi.doSearch EQ", async () => {
  await people();
  const res = await hs.crm.contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: "email", operator: "EQ", value: "s3@example.com" }] }],
  });
  assert.equal(res.total, 1);
  assert.equal(res.results[0].properties.firstname, "F3");
});

test("searchApi.doSearch IN", async () => {
  await people();
  const res = await hs.crm.contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: "email", operator: "IN", values: ["s1@example.com", "s4@example.com"] }] }],
    properties: ["email"],
  });
  assert.deepEqual(res.results.map((r) => r.properties.email).sort(), ["s1@example.com", "s4@example.com"]);
});

test("searchApi.doSearch sorts and pages", async () => {
  await people();
  const filterGroups = [{ filters: [{ propertyName: "lastname", operator: "EQ", value: "Same" }] }];
  const first = await hs.crm.contacts.searchApi.doSearch({ filterGroups, sorts: ["-firstname"], limit: 2, properties: ["firstname"] });
  assert.equal(first.total, 5);
  assert.deepEqual(first.results.map((r) => r.properties.firstname), ["F4", "F3"]);
  const rest = await hs.crm.contacts.searchApi.doSearch({ filterGroups, sorts: ["-firstname"], limit: 10, after: first.paging.next.after, properties: ["firstname"] });
  assert.deepEqual(rest.results.map((r) => r.properties.firstname), ["F2", "F1", "F0"]);
  assert.equal(rest.paging, undefined);
});

test("search is limited to 5 per second, and the SDK's retry waits it out", async () => {
  await simPost("/__sim/config", { rateLimit: 100 });
  const req = { filterGroups: [], limit: 1 };
  let limited;
  for (let i = 0; i < 40 && !limited; i++) {
    try {
      await hs.crm.contacts.searchApi.doSearch(req);
    } catch (e) {
      limited = e;
    }
  }
  assert.ok(limited, "40 searches in a row were never limited");
  assert.equal(limited.code, 429);
  assert.equal(limited.body.message, "You have reached your secondly limit.");
  // With retries on, the SDK recognises that message and tries again a second later.
  const res = await client({ numberOfApiCallRetries: 3 }).crm.contacts.searchApi.doSearch(req);
  assert.equal(typeof res.total, "number");
});

test("an injected 429 on the search path carries the secondly body; the SDK retries it", async () => {
  await fault("/crm/v3/objects/contacts/search", 2);
  const res = await client({ numberOfApiCallRetries: 3 }).crm.contacts.searchApi.doSearch({ filterGroups: [] });
  assert.equal(res.total, 0);
  const stats = await (await fetch(`${sim.url}/__sim/stats`)).json();
  assert.equal(stats.calls["POST /crm/v3/objects/contacts/search 429"], 2);
});

test("a ten-secondly 429 answers HubSpot's body (policyName TEN_SECONDLY_ROLLING); the SDK retries it", async () => {
  await fault("/crm/v3/objects/contacts");
  const raw = await hs.apiRequest({ method: "GET", path: "/crm/v3/objects/contacts" });
  assert.equal(raw.status, 429);
  const body = await raw.json();
  assert.equal(body.policyName, "TEN_SECONDLY_ROLLING");
  assert.equal(body.errorType, "RATE_LIMIT");
  assert.equal(body.message, "You have reached your ten_secondly_rolling limit.");
  await fault("/crm/v3/objects/contacts");
  const e = await rejection(hs.crm.contacts.basicApi.getPage());
  assert.equal(e.code, 429);
  assert.equal(e.body.message, "You have reached your ten_secondly_rolling limit.");
  // The SDK's retry recognises policyName TEN_SECONDLY_ROLLING and tries again 10 s later.
  const c = await create();
  await fault("/crm/v3/objects/contacts/");
  const got = await client({ numberOfApiCallRetries: 2 }).crm.contacts.basicApi.getById(c.id);
  assert.equal(got.id, c.id);
  const stats = await (await fetch(`${sim.url}/__sim/stats`)).json();
  assert.equal(stats.calls["GET /crm/v3/objects/contacts/{id} 429"], 1);
});

test("properties coreApi: create, getByName, getAll, update, archive", async () => {
  const core = hs.crm.properties.coreApi;
  const p = await core.create("contacts", {
    name: "favorite_color", label: "Favorite color", type: "string", fieldType: "text", groupName: "contactinformation", description: "likes",
  });
  assert.equal(p.name, "favorite_color");
  assert.equal(p.description, "likes");
  assert.ok(Array.isArray(p.options));
  assert.equal((await core.getByName("contacts", "favorite_color")).label, "Favorite color");
  assert.equal((await core.getByName("contacts", "email")).hubspotDefined, true);
  const names = (await core.getAll("contacts")).results.map((x) => x.name);
  assert.ok(names.includes("favorite_color") && names.includes("email"));
  const up = await core.update("contacts", "favorite_color", { label: "Colour" });
  assert.equal(up.label, "Colour");
  const res = await core.archiveWithHttpInfo("contacts", "favorite_color");
  assert.equal(res.httpStatusCode, 204);
  assert.equal((await rejection(core.getByName("contacts", "favorite_color"))).code, 404);
});

test("properties groupsApi: create, getAll, getByName, update, archive", async () => {
  const groups = hs.crm.properties.groupsApi;
  const g = await groups.create("contacts", { name: "app_info", label: "App info", displayOrder: 3 });
  assert.equal(g.name, "app_info");
  assert.equal(g.archived, false);
  assert.ok((await groups.getAll("contacts")).results.some((x) => x.name === "contactinformation"));
  assert.equal((await groups.getByName("contacts", "app_info")).displayOrder, 3);
  assert.equal((await groups.update("contacts", "app_info", { label: "Application" })).label, "Application");
  await groups.archive("contacts", "app_info");
  assert.equal((await rejection(groups.getByName("contacts", "app_info"))).code, 404);
});

test("legacy v1 through apiRequest: createOrUpdate, profile read, update by vid", async () => {
  const r = await hs.apiRequest({
    method: "POST", path: "/contacts/v1/contact/createOrUpdate/email/v1@example.com",
    body: { properties: [{ property: "firstname", value: "V" }] },
  });
  assert.equal(r.status, 200);
  const { vid, isNew } = await r.json();
  assert.equal(isNew, true);
  const p = await hs.apiRequest({ method: "GET", path: "/contacts/v1/contact/email/v1@example.com/profile" });
  assert.equal(p.status, 200);
  const profile = await p.json();
  assert.equal(profile.vid, vid);
  assert.equal(profile.properties.firstname.value, "V");
  const u = await hs.apiRequest({
    method: "POST", path: `/contacts/v1/contact/vid/${vid}/profile`, body: { properties: [{ property: "lastname", value: "W" }] },
  });
  assert.equal(u.status, 204);
  assert.equal((await hs.crm.contacts.basicApi.getById(String(vid), ["lastname"])).properties.lastname, "W");
});

test("a call the simulator does not serve answers HubSpot's JSON error, not an empty 405", async () => {
  const r = await hs.apiRequest({ method: "PUT", path: "/crm/v3/objects/contacts/1", body: {} });
  assert.ok([404, 405].includes(r.status), `status ${r.status}`);
  const body = await r.json();
  assert.equal(body.status, "error");
  assert.ok(body.message && body.correlationId && body.category, JSON.stringify(body));
});
