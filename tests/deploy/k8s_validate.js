// tests/deploy/k8s_validate.js - validate the Kubernetes objects of deploy/k8s against the
// Kubernetes API's JSON schemas, as kubernetes-models ships them (one model per kind and
// version, generated from the API's OpenAPI document): field types, required fields,
// enums, formats. Unknown fields pass the schemas (check.py catches misspelt container and
// pod fields).
//
//   node k8s_validate.js K8S.json      (written by check.py: [{file, object}, ...])
//
// Prints one line (or one per failing object), exits 1 when any fails, or when the schema check lets a
// known-bad object through (a self-test: replicas as a string).
"use strict";
const fs = require("fs");

function model(apiVersion, kind) {
  // the package's layout: kubernetes-models/v1 for the core group, else <group>/<version>
  const mod = require(`kubernetes-models/${apiVersion}`);
  if (!mod[kind]) throw new Error(`no model for ${apiVersion} ${kind}`);
  return mod[kind];
}

function validate(o) {
  const M = model(o.apiVersion, o.kind);
  new M(o).validate();
}

let failed = 0;
const objs = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const kinds = new Set();
for (const { file, object } of objs) {
  const what = `${file} ${object.kind}/${object.metadata && object.metadata.name}`;
  try {
    validate(object);
    kinds.add(`${object.apiVersion} ${object.kind}`);
  } catch (e) {
    failed++;
    console.log(`FAIL schema: ${what}: ${e.message}`);
  }
}
if (!failed)
  console.log(`ok   the Kubernetes API's schemas: ${objs.length} objects of deploy/k8s ` +
              `(${[...kinds].sort().join(", ")})`);
if (objs.length === 0) {
  failed++;
  console.log("FAIL schema: no object to validate");
}
// self-test: the same check must refuse a Deployment whose replicas is a string
const bad = JSON.parse(JSON.stringify(objs.find((x) => x.object.kind === "Deployment").object));
bad.spec.replicas = "two";
try {
  validate(bad);
  failed++;
  console.log("MISS schema selftest: a Deployment with replicas \"two\" passed");
} catch (e) {
  console.log(`ok   schema selftest: replicas "two" refused (${e.message.split("\n")[0]})`);
}
process.exit(failed ? 1 : 0);
