#!/usr/bin/env node
// jobtrail's topic and contract, checked the way another team's Node.js service would:
// kafkajs reads the topic, ajv (strict) validates each record against job-event.schema.json,
// canonicalize (RFC 8785) + sha-256 recompute each hash, and @asyncapi/parser reads
// asyncapi.yaml. Nothing here imports or imitates jobtrail's Python code.
//
//   node verify.mjs --contract-only
//   node verify.mjs --bootstrap 127.0.0.1:9092 --topic job-events [--idle 3]
//                   [--expect-events N] [--expect-jobs N] [--session-timeout MS]
//
// Contract checks (always): the schema compiles under ajv 8 `Ajv2020({strict: true})` with
// ajv-formats, with no error and no warning, and each `$defs/<Type>` under draft-07 ajv too
// (how AsyncAPI tools read it); asyncapi.yaml parses with no error or warning diagnostic into
// seven messages whose payloads are seven distinct schemas, each with its own `data` fields
// (the ones of `$defs/<Type>Data`); every vector of hash-vectors.json (when present)
// re-canonicalizes and re-hashes to its published text and hash.
//
// Topic checks (with --bootstrap/--topic): read from the beginning until no record came for
// --idle seconds; every record's value is UTF-8 JSON valid under the schema (strict ajv, 2020-12
// and draft-07), its key is the job id and its headers repeat type, schema version and event id;
// every event with metadata.hash_form "jcs" re-hashes to its `hash` (events without hash_form
// were hashed by jobtrail's earlier form: counted as legacy, not recomputed); per job: one
// partition, versions 1..n in offset order without gaps, prev_hash = the previous event's hash,
// positions increasing. A record whose event_type/schema_version headers this code does not
// know is counted and passed over, as the contract tells consumers to do.
//
// Prints a summary, then one line `RESULT {json}`; exits 0 when everything holds, 1 on any
// mismatch, 2 when it could not run (bad arguments, broker unreachable).

import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Parser, fromFile } from "@asyncapi/parser";
import Ajv2020 from "ajv/dist/2020.js";
import Ajv07 from "ajv";
import addFormats from "ajv-formats";
import canonicalize from "canonicalize";
import { Kafka, logLevel } from "kafkajs";

const HERE = dirname(fileURLToPath(import.meta.url));
const SCHEMAS = resolve(HERE, "../../adapters/kafka/schemas");
const KNOWN_SCHEMA_VERSION = 1;
const HEADERS = ["event_type", "schema_version", "event_id"];

// ----------------------------------------------------------------- bookkeeping

const failures = [];
const MAX_LISTED = 50;

function fail(message) {
  failures.push(message);
}

function sha256(text) {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** The envelope as its hash covers it: everything but `position` and `hash`. */
function covered(envelope) {
  const { position: _position, hash: _hash, ...rest } = envelope;
  return rest;
}

function silentLogger(sink) {
  return {
    log() {},
    warn: (...args) => sink.push(args.join(" ")),
    error: (...args) => sink.push(args.join(" ")),
  };
}

// ------------------------------------------------------------------ the schema

function compileSchemas(schemaPath) {
  const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
  const types = schema.$defs.EventType.enum;
  const warnings = [];
  const ajv = new Ajv2020({ strict: true, allErrors: true, logger: silentLogger(warnings) });
  addFormats(ajv);
  let validate2020;
  try {
    validate2020 = ajv.compile(schema);
  } catch (error) {
    fail(`ajv 2020-12 strict refuses ${schemaPath}: ${error.message}`);
  }

  // The AsyncAPI payloads point at $defs/<Type> and are declared draft-07: check that claim
  // with draft-07 ajv, strict as well, on the same file (its $schema line aside).
  const warnings07 = [];
  const ajv07 = new Ajv07({ strict: true, allErrors: true, logger: silentLogger(warnings07) });
  addFormats(ajv07);
  const { $schema: _draft, ...asDraft07 } = schema;
  const perType07 = {};
  try {
    ajv07.addSchema({ ...asDraft07, $id: "job-event.schema.json" });
    for (const type of types) {
      perType07[type] = ajv07.compile({ $ref: `job-event.schema.json#/$defs/${type}` });
    }
  } catch (error) {
    fail(`ajv draft-07 strict refuses the $defs of ${schemaPath}: ${error.message}`);
  }
  for (const warning of warnings) fail(`ajv 2020-12 strict warns: ${warning}`);
  for (const warning of warnings07) fail(`ajv draft-07 strict warns: ${warning}`);
  return {
    schema,
    types,
    validate2020,
    perType07,
    ajvWarnings: warnings.length + warnings07.length,
  };
}

// ------------------------------------------------------------------- asyncapi

const SEVERITY = ["error", "warning", "information", "hint"];

async function checkAsyncApi(asyncapiPath, contract) {
  const parser = new Parser();
  const { document, diagnostics } = await fromFile(parser, asyncapiPath).parse();
  const counts = { error: 0, warning: 0, information: 0, hint: 0 };
  for (const diagnostic of diagnostics) {
    const severity = SEVERITY[diagnostic.severity] ?? "error";
    counts[severity] += 1;
    if (severity === "error" || severity === "warning") {
      fail(`asyncapi ${severity}: ${diagnostic.message} at ${diagnostic.path.join("/")}`);
    }
  }
  const result = { diagnostics: counts, messages: {} };
  if (!document) {
    fail("@asyncapi/parser gave no document");
    return result;
  }
  const messages = document.allMessages().all();
  const names = messages.map((message) => message.name() ?? message.id());
  const expected = [...contract.types].sort();
  if (JSON.stringify([...names].sort()) !== JSON.stringify(expected)) {
    fail(`asyncapi messages ${names.join(", ")}; expected ${expected.join(", ")}`);
  }
  const payloadTexts = new Set();
  const dataFieldSets = new Set();
  for (const message of messages) {
    const name = message.name() ?? message.id();
    const payload = message.payload();
    if (!payload) {
      fail(`asyncapi message ${name} has no payload`);
      continue;
    }
    payloadTexts.add(JSON.stringify(payload.json(), withoutParserIds));
    const parts = [payload, ...(payload.allOf() ?? [])];
    const typeConst = parts.map((p) => p.properties()?.type?.const()).find((c) => c !== undefined);
    const data = parts.map((p) => p.properties()?.data).find((d) => d?.properties());
    const fields = data ? Object.keys(data.properties()) : [];
    const own = Object.keys(contract.schema.$defs[`${name}Data`]?.properties ?? {});
    result.messages[name] = { schemaFormat: payload.schemaFormat(), dataFields: fields };
    if (typeConst !== name) fail(`asyncapi ${name}: payload type const is ${typeConst}`);
    if (fields.length === 0) fail(`asyncapi ${name}: the payload has no data fields of its own`);
    if (JSON.stringify([...fields].sort()) !== JSON.stringify([...own].sort())) {
      fail(`asyncapi ${name}: data fields ${fields.join(", ")}; the schema has ${own.join(", ")}`);
    }
    if (data && data.additionalProperties() !== false) {
      fail(`asyncapi ${name}: data is not closed (additionalProperties)`);
    }
    dataFieldSets.add(JSON.stringify([...fields].sort()));
    const headers = message.headers()?.properties() ?? {};
    for (const header of HEADERS) {
      if (!(header in headers)) fail(`asyncapi ${name}: no ${header} header`);
    }
    if (!message.bindings().has("kafka")) fail(`asyncapi ${name}: no kafka binding (key)`);
  }
  result.distinctPayloads = payloadTexts.size;
  result.distinctDataFieldSets = dataFieldSets.size;
  if (payloadTexts.size !== messages.length || dataFieldSets.size !== messages.length) {
    fail(
      `asyncapi: ${messages.length} messages but ${payloadTexts.size} distinct payloads and ` +
        `${dataFieldSets.size} distinct data field sets`,
    );
  }
  return result;
}

/** JSON.stringify replacer: the parser's own `x-parser-*` ids make any two payloads differ. */
function withoutParserIds(key, value) {
  return key.startsWith("x-parser-") ? undefined : value;
}

// -------------------------------------------------------------------- vectors

/**
 * hash-vectors.json: `{"description", "vectors": [{"name", "covers", "envelope", "canonical",
 * "sha256"}]}`, where `envelope` is what a hash covers (an envelope without position and hash).
 */
function checkVectors(vectorsPath) {
  if (!existsSync(vectorsPath)) return { present: false, checked: 0 };
  const vectors = JSON.parse(readFileSync(vectorsPath, "utf8")).vectors;
  if (!Array.isArray(vectors) || vectors.length === 0) {
    fail(`${vectorsPath}: no "vectors" list`);
    return { present: true, checked: 0 };
  }
  let checked = 0;
  vectors.forEach((vector, index) => {
    const label = `vector ${vector.name ?? index}`;
    const { envelope, canonical, sha256: hash } = vector;
    if (typeof envelope !== "object" || typeof canonical !== "string" || typeof hash !== "string") {
      fail(`${label}: needs "envelope" (an object), "canonical" and "sha256" (strings)`);
      return;
    }
    if ("position" in envelope || "hash" in envelope) {
      fail(`${label}: the envelope has position or hash, which a hash does not cover`);
    }
    let ours;
    try {
      ours = canonicalize(covered(envelope));
    } catch (error) {
      fail(`${label}: canonicalize refuses the envelope: ${error.message}`);
      return;
    }
    if (ours !== canonical) {
      fail(`${label}: canonical text differs\n  canonicalize: ${ours}\n  the file:     ${canonical}`);
    }
    if (sha256(canonical) !== hash) fail(`${label}: sha-256 of its canonical text is not ${hash}`);
    if (sha256(ours) !== hash) fail(`${label}: sha-256 of canonicalize's text is not ${hash}`);
    checked += 1;
  });
  return { present: true, checked };
}

// ---------------------------------------------------------------------- topic

function header(message, name) {
  const value = message.headers?.[name];
  if (value === undefined) return undefined;
  return Buffer.isBuffer(value) ? value.toString("utf8") : String(value);
}

class TopicCheck {
  constructor(contract) {
    this.contract = contract;
    this.utf8 = new TextDecoder("utf-8", { fatal: true });
    this.records = 0;
    this.events = 0;
    this.duplicates = 0;
    this.skippedUnknown = 0;
    this.jcsVerified = 0;
    this.legacyHashes = 0;
    this.byType = {};
    this.jobs = new Map(); // job_id -> {partition, version, hash, position, eventIds}
    this.lastOffset = new Map(); // partition -> offset
  }

  record(partition, message) {
    this.records += 1;
    const where = `partition ${partition} offset ${message.offset}`;
    const offset = BigInt(message.offset);
    const previous = this.lastOffset.get(partition);
    if (previous !== undefined && offset <= previous) {
      fail(`${where}: offsets out of order (after ${previous})`);
    }
    this.lastOffset.set(partition, offset);

    const eventType = header(message, "event_type");
    const schemaVersion = header(message, "schema_version");
    if (eventType === undefined || schemaVersion === undefined) {
      fail(`${where}: no event_type or schema_version header`);
    } else if (
      !this.contract.types.includes(eventType) ||
      schemaVersion !== String(KNOWN_SCHEMA_VERSION)
    ) {
      // A type or schema version this consumer does not know: pass it over, do not validate.
      if (!/^[1-9][0-9]*$/.test(schemaVersion)) {
        fail(`${where}: schema_version header ${JSON.stringify(schemaVersion)} is not a version`);
      }
      this.skippedUnknown += 1;
      return;
    }

    let envelope;
    try {
      envelope = JSON.parse(this.utf8.decode(message.value));
    } catch (error) {
      fail(`${where}: the value is not UTF-8 JSON (${error.message})`);
      return;
    }
    const label = `${where} (job ${envelope?.job_id} v${envelope?.version} ${envelope?.type})`;
    this.validate(envelope, label);
    if (typeof envelope !== "object" || envelope === null || Array.isArray(envelope)) return;

    const key = message.key?.toString("utf8");
    if (key !== envelope.job_id) fail(`${label}: key ${key} is not the job id`);
    const expectedHeaders = {
      event_type: envelope.type,
      schema_version: String(envelope.schema_version),
      event_id: envelope.event_id,
    };
    for (const [name, value] of Object.entries(expectedHeaders)) {
      if (header(message, name) !== value) {
        fail(`${label}: header ${name} is ${header(message, name)}, the envelope says ${value}`);
      }
    }
    this.checkHash(envelope, label);
    this.chain(partition, envelope, label);
  }

  validate(envelope, label) {
    const { validate2020, perType07 } = this.contract;
    if (validate2020 && !validate2020(envelope)) {
      fail(`${label}: invalid (ajv 2020-12): ${ajvErrors(validate2020.errors)}`);
    }
    const validate07 = perType07[envelope?.type];
    if (validate07 && !validate07(envelope)) {
      fail(`${label}: invalid (ajv draft-07, $defs/${envelope.type}): ${ajvErrors(validate07.errors)}`);
    }
  }

  checkHash(envelope, label) {
    const form = envelope.metadata?.hash_form;
    if (form === undefined) {
      this.legacyHashes += 1;
      return;
    }
    if (form !== "jcs") {
      fail(`${label}: unknown hash_form ${JSON.stringify(form)}`);
      return;
    }
    let text;
    try {
      text = canonicalize(covered(envelope));
    } catch (error) {
      fail(`${label}: canonicalize refuses the envelope: ${error.message}`);
      return;
    }
    const ours = sha256(text);
    if (ours === envelope.hash) this.jcsVerified += 1;
    else {
      fail(`${label}: hash ${envelope.hash}, but sha-256 of its JCS form is ${ours}\n  ${text.slice(0, 600)}`);
    }
  }

  chain(partition, envelope, label) {
    const job = this.jobs.get(envelope.job_id);
    if (job === undefined) {
      if (envelope.version !== 1) fail(`${label}: the job's first event on the topic is not v1`);
      if (envelope.prev_hash !== "") fail(`${label}: version 1 with prev_hash ${envelope.prev_hash}`);
      this.jobs.set(envelope.job_id, {
        partition,
        version: envelope.version,
        hash: envelope.hash,
        position: envelope.position,
        eventIds: new Map([[envelope.version, [envelope.event_id, envelope.hash]]]),
      });
      this.accepted(envelope);
      return;
    }
    if (job.partition !== partition) {
      fail(`${label}: the job's events are on partitions ${job.partition} and ${partition}`);
    }
    if (envelope.version <= job.version) {
      const [eventId, hash] = job.eventIds.get(envelope.version) ?? [];
      if (eventId === envelope.event_id && hash === envelope.hash) this.duplicates += 1;
      else fail(`${label}: a different event with the version of one already read`);
      return;
    }
    if (envelope.version !== job.version + 1) {
      fail(`${label}: gap, version ${envelope.version} after ${job.version}`);
    }
    if (envelope.prev_hash !== job.hash) {
      fail(`${label}: broken chain, prev_hash ${envelope.prev_hash} but v${job.version} has hash ${job.hash}`);
    }
    if (!(envelope.position > job.position)) {
      fail(`${label}: position ${envelope.position} not after ${job.position}`);
    }
    job.version = envelope.version;
    job.hash = envelope.hash;
    job.position = envelope.position;
    job.eventIds.set(envelope.version, [envelope.event_id, envelope.hash]);
    this.accepted(envelope);
  }

  accepted(envelope) {
    this.events += 1;
    this.byType[envelope.type] = (this.byType[envelope.type] ?? 0) + 1;
  }

  summary() {
    return {
      records: this.records,
      events: this.events,
      jobs: this.jobs.size,
      partitions: new Set([...this.jobs.values()].map((j) => j.partition)).size,
      by_type: Object.fromEntries(Object.entries(this.byType).sort()),
      jcs_verified: this.jcsVerified,
      legacy_hashes: this.legacyHashes,
      duplicates: this.duplicates,
      skipped_unknown: this.skippedUnknown,
    };
  }
}

function ajvErrors(errors) {
  return (errors ?? [])
    .slice(0, 5)
    .map((e) => `${e.instancePath || "(envelope)"} ${e.message}`)
    .join("; ");
}

async function readTopic({ bootstrap, topic, idle, sessionTimeout, joinTimeout }, check) {
  const kafka = new Kafka({
    clientId: "jobtrail-node-verifier",
    brokers: bootstrap.split(","),
    logLevel: logLevel.ERROR,
    connectionTimeout: 10000,
    retry: { retries: 3 },
  });
  const consumer = kafka.consumer({
    groupId: `jobtrail-node-verifier-${process.pid}-${Date.now()}`,
    // Tansu holds a group join for about half the session timeout: keep it short.
    sessionTimeout,
    heartbeatInterval: Math.max(100, Math.floor(sessionTimeout / 4)),
    rebalanceTimeout: sessionTimeout * 2,
    maxWaitTimeInMs: 100,
  });
  let joinedAt;
  let lastRecordAt;
  let crashed;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joinedAt ??= Date.now();
  });
  consumer.on(consumer.events.CRASH, (event) => {
    crashed = event.payload.error;
  });
  const started = Date.now();
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: 1,
      eachMessage: async ({ partition, message }) => {
        lastRecordAt = Date.now();
        check.record(partition, message);
      },
    });
    // Until idle: no record for `idle` seconds since the group join or the last record
    // (end offsets are not to be trusted on every broker, so records are counted instead).
    for (;;) {
      await new Promise((done) => setTimeout(done, 100));
      if (crashed) throw crashed;
      const now = Date.now();
      if (joinedAt === undefined) {
        if (now - started > joinTimeout * 1000) {
          throw new Error(`no group join within ${joinTimeout} s`);
        }
        continue;
      }
      if (now - Math.max(joinedAt, lastRecordAt ?? 0) >= idle * 1000) break;
    }
  } finally {
    await consumer.disconnect().catch(() => {});
  }
  return { seconds: (Date.now() - started) / 1000 };
}

// ----------------------------------------------------------------------- main

function usage(message) {
  console.error(`verify.mjs: ${message}`);
  console.error(
    "usage: node verify.mjs --contract-only | --bootstrap HOST:PORT --topic NAME [--idle S] " +
      "[--expect-events N] [--expect-jobs N] [--session-timeout MS] [--schemas DIR]",
  );
  process.exit(2);
}

async function main() {
  let args;
  try {
    ({ values: args } = parseArgs({
      options: {
        "contract-only": { type: "boolean", default: false },
        bootstrap: { type: "string" },
        topic: { type: "string" },
        idle: { type: "string", default: "3" },
        "join-timeout": { type: "string", default: "30" },
        "session-timeout": { type: "string", default: "2000" },
        "expect-events": { type: "string" },
        "expect-jobs": { type: "string" },
        schemas: { type: "string", default: SCHEMAS },
      },
    }));
  } catch (error) {
    usage(error.message);
  }
  const topicMode = !args["contract-only"];
  if (topicMode && (!args.bootstrap || !args.topic)) {
    usage("give --bootstrap and --topic, or --contract-only");
  }
  const schemas = resolve(args.schemas);
  const summary = { node: process.version };

  const contract = compileSchemas(join(schemas, "job-event.schema.json"));
  summary.ajv = { strict: true, compiled: Boolean(contract.validate2020), warnings: contract.ajvWarnings };
  console.log(
    `schema: ajv 2020-12 strict ${contract.validate2020 ? "compiles" : "REFUSES"} it, ` +
      `draft-07 strict ${Object.keys(contract.perType07).length} $defs, ${contract.ajvWarnings} warning(s)`,
  );

  summary.asyncapi = await checkAsyncApi(join(schemas, "asyncapi.yaml"), contract);
  const d = summary.asyncapi.diagnostics;
  console.log(
    `asyncapi: ${Object.keys(summary.asyncapi.messages).length} messages, ` +
      `${summary.asyncapi.distinctPayloads} distinct payloads, ` +
      `${summary.asyncapi.distinctDataFieldSets} distinct data field sets; diagnostics: ` +
      `${d.error} error(s), ${d.warning} warning(s), ${d.information} info, ${d.hint} hint(s)`,
  );
  for (const [name, message] of Object.entries(summary.asyncapi.messages)) {
    console.log(`  ${name}: ${message.dataFields.join(", ")}`);
  }

  summary.vectors = checkVectors(join(schemas, "hash-vectors.json"));
  console.log(
    summary.vectors.present
      ? `hash vectors: ${summary.vectors.checked} re-canonicalized and re-hashed with canonicalize`
      : "hash vectors: no hash-vectors.json",
  );

  if (topicMode) {
    const check = new TopicCheck(contract);
    let read;
    try {
      read = await readTopic(
        {
          bootstrap: args.bootstrap,
          topic: args.topic,
          idle: Number(args.idle),
          sessionTimeout: Number(args["session-timeout"]),
          joinTimeout: Number(args["join-timeout"]),
        },
        check,
      );
    } catch (error) {
      console.error(`verify.mjs: cannot read ${args.topic} from ${args.bootstrap}: ${error.message}`);
      process.exit(2);
    }
    summary.topic = { ...check.summary(), seconds: read.seconds };
    const t = summary.topic;
    for (const [name, expected] of [
      ["events", args["expect-events"]],
      ["jobs", args["expect-jobs"]],
    ]) {
      if (expected !== undefined && t[name] !== Number(expected)) {
        fail(`topic: ${t[name]} ${name}, expected ${expected}`);
      }
    }
    console.log(
      `topic ${args.topic}: ${t.records} records, ${t.events} events of ${t.jobs} jobs on ` +
        `${t.partitions} partition(s) in ${t.seconds.toFixed(1)} s; hashes: ${t.jcs_verified} ` +
        `recomputed (jcs), ${t.legacy_hashes} legacy not recomputed; ${t.duplicates} duplicate(s), ` +
        `${t.skipped_unknown} unknown type/version passed over`,
    );
    console.log(`  by type: ${Object.entries(t.by_type).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  }

  summary.failures = failures.length;
  if (failures.length) {
    console.log(`FAILED: ${failures.length} mismatch(es)`);
    for (const failure of failures.slice(0, MAX_LISTED)) console.log(`  - ${failure}`);
    if (failures.length > MAX_LISTED) console.log(`  ... and ${failures.length - MAX_LISTED} more`);
  } else {
    console.log("OK: everything checked holds");
  }
  console.log(`RESULT ${JSON.stringify(summary)}`);
  process.exit(failures.length ? 1 : 0);
}

await main();
