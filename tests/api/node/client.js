#!/usr/bin/env node
// A client of the mtp.v1 gRPC API written only from the .proto files: it loads
// proto/mtp/v1/{training,registry}.proto at run time with @grpc/proto-loader (no generated
// code), submits a small task, watches it to its end, then reads the model version the task
// registered. It prints one JSON object with what it saw (tests/api/test_node_client.py reads
// it); any failure is one line on stderr and exit code 1.
//
//   node client.js HOST:PORT TOKEN [MODEL_NAME]
"use strict";

const path = require("path");
const crypto = require("crypto");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "..", "proto");
const CALL_DEADLINE_MS = 120 * 1000;
const WATCH_DEADLINE_MS = 600 * 1000;

function fail(message) {
  process.stderr.write(`client.js: ${message}\n`);
  process.exit(1);
}

function deadline(ms) {
  return new Date(Date.now() + ms);
}

function load() {
  // google/protobuf/struct.proto (imported by training.proto) is one of the well-known types
  // proto-loader resolves itself (protobufjs ships them); proto/ holds the platform's files.
  const definition = protoLoader.loadSync(["mtp/v1/training.proto", "mtp/v1/registry.proto"], {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto: run_dir, weights_hash
    longs: String,
    enums: String, // TaskState as its name: TASK_STATE_RUNNING
    defaults: true,
    oneofs: true, // TaskEvent.event names the field that is set
  });
  return grpc.loadPackageDefinition(definition).mtp.v1;
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: deadline(CALL_DEADLINE_MS) }, (err, reply) => {
      if (err) {
        reject(new Error(`${method}: ${grpc.status[err.code]} (${err.code}): ${err.details}`));
      } else {
        resolve(reply);
      }
    });
  });
}

function watch(client, id, metadata) {
  // every event until the server ends the stream, and the status it ended with
  return new Promise((resolve) => {
    const events = [];
    const call = client.WatchTask({ id, logs: false }, metadata,
                                  { deadline: deadline(WATCH_DEADLINE_MS) });
    let status = null;
    let ended = false;
    const finish = () => {
      if (ended && status !== null) resolve({ events, status });
    };
    call.on("data", (event) => {
      const kind = event.event;
      if (kind === "task") {
        const t = event.task;
        events.push({ type: "task", state: t.state.replace("TASK_STATE_", ""), reason: t.reason,
                      attempts: t.attempts, job_id: t.job_id, at: event.at });
      } else if (kind === "progress") {
        const p = event.progress;
        events.push({ type: "progress", epoch: p.epoch, epochs: p.epochs, percent: p.percent,
                      metrics: p.metrics, at: event.at });
      } else if (kind === "log") {
        events.push({ type: "log", attempt: event.log.attempt, lines: event.log.lines.length });
      }
    });
    call.on("error", (err) => {
      status = { code: grpc.status[err.code], details: err.details };
      ended = true;
      finish();
    });
    call.on("status", (s) => {
      status = { code: grpc.status[s.code], details: s.details };
      finish();
    });
    call.on("end", () => {
      ended = true;
      finish();
    });
  });
}

async function main() {
  const [target, token, modelName = "node-digits"] = process.argv.slice(2);
  if (!target || !token) fail("usage: node client.js HOST:PORT TOKEN [MODEL_NAME]");
  const v1 = load();
  const credentials = grpc.credentials.createInsecure(); // loopback
  const training = new v1.TrainingService(target, credentials);
  const registry = new v1.ModelRegistry(target, credentials);
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);

  const task = {
    name: `${modelName}-task`,
    model: { type: "mlp", hidden_sizes: [32] },
    dataset: { source: "sklearn", name: "digits" },
    training: { epochs: 3, batch_size: 32, learning_rate: 0.003 },
    resources: { num_workers: 1, cpus_per_worker: 1 },
    tracking: { enabled: true },
    registry: { register_as: modelName },
    consistency: { cache: { enabled: false }, sharing: { enabled: false } },
  };
  const submitted = await unary(training, "SubmitTask", {
    config_text: JSON.stringify(task),
    request_id: `node-${crypto.randomUUID()}`,
  }, metadata);
  const id = submitted.task.id;
  const watched = await watch(training, id, metadata);
  const final = await unary(training, "GetTask", { id }, metadata);
  const version = await unary(registry, "GetVersion", { ref: `${modelName}/1` }, metadata);
  const versions = await unary(registry, "ListVersions", { name: modelName }, metadata);
  training.close();
  registry.close();

  process.stdout.write(JSON.stringify({
    submitted: { id, created: submitted.created, state: submitted.task.state },
    events: watched.events,
    stream_status: watched.status,
    task: {
      id: final.id, state: final.state, reason: final.reason, run_dir: final.run_dir,
      result: final.result,
    },
    version: {
      name: version.name, version: version.version, run_dir: version.run_dir,
      run_id: version.run_id, tags: version.tags, metrics: version.metrics,
      relation: version.relation, created_by: version.created_by,
    },
    versions: versions.versions.map((v) => ({ name: v.name, version: v.version,
                                              run_dir: v.run_dir })),
  }) + "\n");
}

main().catch((err) => fail(err && err.message ? err.message : String(err)));
