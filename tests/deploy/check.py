"""tests/deploy/check.py - the structural checks of deploy/ that need no tool but Python.

Run by tests/deploy/check.sh with Debian's /usr/bin/python3 (python3-yaml):

    check.py ROOT OUTDIR

prints one line per check ("ok NAME" or "FAIL NAME: why", then the reasons indented) and
exits 1 when any failed. It also writes, for the tools that check.sh runs next:
  OUTDIR/dashboard-rules.yml  every dashboard query as a recording rule (promtool check
                              rules parses the PromQL)
  OUTDIR/k8s.json             every Kubernetes object of deploy/k8s (the schema check in
                              k8s_validate.js)
`check.py --selftest ROOT` feeds each check a broken copy of the real files and fails unless
every check catches its break: a check that cannot fail checks nothing.
"""
import copy
import glob
import json
import os
import re
import sys

import yaml

# ---- helpers ------------------------------------------------------------------------------


class Check:
    """Collects the problems of one named check."""

    def __init__(self, name):
        self.name = name
        self.problems = []

    def fail(self, msg):
        self.problems.append(msg)

    def expect(self, cond, msg):
        if not cond:
            self.fail(msg)
        return cond


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_yaml_docs(path):
    return [d for d in yaml.safe_load_all(read(path)) if d is not None]


def job_types(root):
    """The job types, from deploy/kafka/create-topics.sh's TYPES (a unit test keeps that list
    equal to common/jobtype.c)."""
    m = re.search(r'^TYPES="([^"]+)"', read(os.path.join(root, "deploy/kafka/create-topics.sh")),
                  re.M)
    return m.group(1).split() if m else []


# ---- PromQL metric names -----------------------------------------------------------------

PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                "group_right", "bool", "offset", "inf", "nan", "Inf", "NaN",
                # aggregation operators, which may stand before "by (...)" instead of "("
                "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}


def promql_metrics(expr):
    """The metric names an expression reads: identifiers that are not functions, keywords,
    label names (in {...}, by (...), on (...) ...), strings, durations or Grafana variables."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", "", s)
    s = re.sub(r"\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", s)
    s = re.sub(r"\$\{?\w+\}?", "", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", s):
        if m.group(1) not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def metric_contract(root):
    """name -> type, from the tables of deploy/prometheus/METRICS.md."""
    out = {}
    for m in re.finditer(r"^\|\s*`([A-Za-z_:][\w:]*)`\s*\|\s*(\w+)\s*\|",
                         read(os.path.join(root, "deploy/prometheus/METRICS.md")), re.M):
        out[m.group(1)] = m.group(2)
    return out


def unknown_metrics(names, contract, records):
    bad = []
    for n in sorted(names):
        if n in contract or n in records:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        if base != n and contract.get(base) == "histogram":
            continue
        bad.append(n)
    return bad


# ---- the checks ---------------------------------------------------------------------------


def check_parse(root):
    c = Check("every YAML and JSON file under deploy/ parses")
    files = sorted(glob.glob(os.path.join(root, "deploy/**/*.y*ml"), recursive=True))
    c.expect(len(files) >= 10, "fewer than 10 YAML files under deploy/: %d" % len(files))
    for f in files:
        try:
            load_yaml_docs(f)
        except yaml.YAMLError as e:
            c.fail("%s: %s" % (os.path.relpath(f, root), str(e).replace("\n", " ")))
    jfiles = sorted(glob.glob(os.path.join(root, "deploy/**/*.json"), recursive=True))
    c.expect(jfiles, "no JSON file under deploy/")
    for f in jfiles:
        try:
            json.loads(read(f))
        except ValueError as e:
            c.fail("%s: %s" % (os.path.relpath(f, root), e))
    return c


def alert_rules(alerts):
    rules = [r for g in alerts.get("groups", []) for r in g.get("rules", [])]
    return ([r for r in rules if "alert" in r], {r["record"] for r in rules if "record" in r})


def check_alerts(root, alerts, tests, contract):
    c = Check("alerts.yml: severity, summary, description, runbook; metrics in METRICS.md; "
              "each alert fires and stays silent in alerts.test.yml")
    rules, records = alert_rules(alerts)
    c.expect(len(rules) >= 11, "only %d alerts" % len(rules))
    names = [r["alert"] for r in rules]
    c.expect(len(names) == len(set(names)), "an alert name is used twice")
    for r in rules:
        a = r["alert"]
        c.expect(r.get("labels", {}).get("severity") in ("critical", "warning"),
                 "%s: severity must be critical or warning" % a)
        ann = r.get("annotations", {})
        for k in ("summary", "description", "runbook"):
            c.expect(str(ann.get(k, "")).strip(), "%s: no %s" % (a, k))
        c.expect("conveyorctl" in str(ann.get("runbook", "")),
                 "%s: the runbook names no conveyorctl command" % a)
        for n in unknown_metrics(promql_metrics(r["expr"]), contract, records):
            c.fail("%s: metric %s is not in METRICS.md" % (a, n))
    fired, silent = set(), set()
    for t in tests.get("tests", []):
        for art in t.get("alert_rule_test", []):
            (fired if art.get("exp_alerts") else silent).add(art["alertname"])
    for a in names:
        c.expect(a in fired, "%s: no test case where it fires" % a)
        c.expect(a in silent, "%s: no test case where it stays silent" % a)
    for a in sorted((fired | silent) - set(names)):
        c.fail("alerts.test.yml tests %s, which alerts.yml does not have" % a)
    return c


SEED_PANELS = ["Activation requests overview", "Activation success rate",
               "Failed activations (hourly)", "Worker status",
               "Orders per state", "Fetch-to-complete latency", "Upstream latency (p95)",
               "Circuit breakers", "Queue depth", "Queue lag", "Held transactions"]


def check_dashboard(root, dash, contract, records, outdir=None):
    c = Check("grafana dashboard: schemaVersion 39, uid, datasource by variable, seed 003's "
              "and the pipeline's panels, metrics in METRICS.md")
    c.expect(dash.get("schemaVersion") == 39, "schemaVersion is not 39")
    c.expect(re.fullmatch(r"[\w-]{1,40}", str(dash.get("uid", ""))), "no valid uid")
    c.expect(dash.get("title"), "no title")
    tvars = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = tvars.get("datasource", {})
    c.expect(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
             "no template variable 'datasource' of type datasource (prometheus)")
    names, rules, ids = set(), [], set()
    for v in tvars.values():
        m = re.match(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,", str(v.get("definition", "")))
        if m:
            names.add(m.group(1))
    titles = []
    for p in dash.get("panels", []):
        c.expect(p.get("id") not in ids, "panel id %s used twice" % p.get("id"))
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        c.expect(all(k in g for k in "hwxy") and g.get("x", 0) + g.get("w", 0) <= 24,
                 "panel %s: bad gridPos" % p.get("title"))
        if p.get("type") == "row":
            continue
        titles.append(p.get("title"))
        c.expect(p.get("datasource", {}).get("uid") == "${datasource}",
                 "panel %s: data source not ${datasource}" % p.get("title"))
        targets = p.get("targets", [])
        c.expect(targets, "panel %s: no query" % p.get("title"))
        refs = [t.get("refId") for t in targets]
        c.expect(len(refs) == len(set(refs)), "panel %s: refId used twice" % p.get("title"))
        for t in targets:
            e = t.get("expr", "")
            if not c.expect(e, "panel %s: empty query" % p.get("title")):
                continue
            names |= promql_metrics(e)
            rules.append({"record": "dashboard:panel_%s_%s" % (p.get("id"), t.get("refId")),
                          "expr": e.replace("$__rate_interval", "1m").replace("$type", ".*")})
    for want in SEED_PANELS:
        c.expect(want in titles, "no panel titled %r" % want)
    for n in unknown_metrics(names, contract, records):
        c.fail("metric %s is not in METRICS.md" % n)
    if outdir:
        with open(os.path.join(outdir, "dashboard-rules.yml"), "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    return c


ONE_SHOT = ("no", '"no"')
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def check_compose(root, compose, env_example, prom):
    c = Check("compose.yaml: depends_on names services, health checks or one-shots, secrets "
              "from deploy/.env, a worker per job type, Prometheus scrapes its services")
    services = compose.get("services", {})
    c.expect(services, "no services")
    for want in ("redis", "postgres", "kafka", "migrate", "api", "sim", "prometheus",
                 "grafana"):
        c.expect(want in services, "no service %s" % want)
    oneshot = {n for n, s in services.items() if str(s.get("restart", "")) == "no"}
    for n, s in services.items():
        c.expect("healthcheck" in s or n in oneshot,
                 "%s: no healthcheck and not a one-shot (restart: \"no\")" % n)
        deps = s.get("depends_on", {})
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for d, how in deps.items():
            if not c.expect(d in services, "%s depends on %s, which is no service" % (n, d)):
                continue
            cond = (how or {}).get("condition", "service_started")
            c.expect(cond in CONDITIONS, "%s: unknown condition %s" % (n, cond))
            if cond == "service_healthy":
                c.expect("healthcheck" in services[d],
                         "%s waits for %s healthy, which has no healthcheck" % (n, d))
            if cond == "service_completed_successfully":
                c.expect(d in oneshot, "%s waits for %s to complete, which is no one-shot" % (n, d))
        if "image" in s and str(s["image"]).startswith("${CONVEYOR_IMAGE"):
            if n not in ("migrate", "sim"):
                c.expect(s.get("depends_on", {}).get("migrate", {}).get("condition")
                         == "service_completed_successfully",
                         "%s does not wait for migrate to complete" % n)
        for v in s.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("."):
                c.expect(os.path.exists(os.path.join(root, "deploy", src)),
                         "%s mounts %s, which does not exist" % (n, src))
        for f in s.get("env_file", []):
            c.expect(os.path.exists(os.path.join(root, "deploy", f)),
                     "%s: env_file %s does not exist" % (n, f))
        env = s.get("environment", {})
        for k, v in (env.items() if isinstance(env, dict) else []):
            if re.search(r"PASSWORD|SECRET|API_KEYS|AUTH$", k):
                c.expect(re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(v)),
                         "%s: %s is not taken from deploy/.env (${NAME:?...})" % (n, k))
            if re.search(r"_URL$|_DSN$", k) and "@" in str(v):
                c.expect(re.search(r":\$\{\w+:\?[^}]*\}@", str(v)),
                         "%s: %s has a password that is not from deploy/.env" % (n, k))
    text = read(os.path.join(root, "deploy/compose.yaml"))
    for var in sorted(set(re.findall(r"\$\{(\w+):\?", text))):
        c.expect(re.search(r"^%s=" % var, env_example, re.M),
                 "%s is required by compose.yaml but not in .env.example" % var)
    served = set()
    for n, s in services.items():
        cmd = s.get("command", [])
        if isinstance(cmd, list) and cmd[:1] == ["conveyor-worker"] and "--types" in cmd:
            served |= set(cmd[cmd.index("--types") + 1].split(","))
    for t in job_types(root):
        c.expect(t in served, "no worker service runs job type %s" % t)
    for sc in prom.get("scrape_configs", []):
        for st in sc.get("static_configs", []):
            for tgt in st.get("targets", []):
                host = tgt.rsplit(":", 1)[0]
                c.expect(host == "localhost" or host in services,
                         "prometheus.yml scrapes %s: no compose service %s" % (tgt, host))
    return c


CONTAINER_KEYS = {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom",
                  "ports", "resources", "readinessProbe", "livenessProbe", "startupProbe",
                  "securityContext", "volumeMounts", "lifecycle", "workingDir"}
POD_KEYS = {"containers", "initContainers", "securityContext", "automountServiceAccountToken",
            "terminationGracePeriodSeconds", "restartPolicy", "topologySpreadConstraints",
            "affinity", "volumes", "serviceAccountName", "nodeSelector", "tolerations",
            "priorityClassName"}


def pod_template(obj):
    k = obj.get("kind")
    if k in ("Deployment", "Job"):
        return obj.get("spec", {}).get("template", {})
    if k == "CronJob":
        return obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {})
    return None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s(root, kust, objs, outdir=None):
    """objs: [(file, object)]"""
    c = Check("k8s: apiVersion/kind/name, no namespace, images, probes, non-root, read-only "
              "root, references resolve, a worker + HPA + PDB per job type")
    kdir = os.path.join(root, "deploy/k8s")
    listed = kust.get("resources", [])
    for f in listed:
        c.expect(os.path.exists(os.path.join(kdir, f)), "kustomization lists %s: missing" % f)
    for f in sorted(glob.glob(os.path.join(kdir, "*.yaml"))):
        b = os.path.basename(f)
        c.expect(b == "kustomization.yaml" or b in listed, "%s is not in kustomization.yaml" % b)
    secrets = {g["name"] for g in kust.get("secretGenerator", [])}
    for g in kust.get("secretGenerator", []):
        for e in g.get("envs", []):
            c.expect(os.path.exists(os.path.join(kdir, e + ".example")),
                     "secretGenerator %s reads %s: no %s.example" % (g["name"], e, e))
    secrets |= {o["metadata"]["name"] for _, o in objs if o.get("kind") == "Secret"}
    configmaps = {o["metadata"]["name"] for _, o in objs if o.get("kind") == "ConfigMap"}
    deployments = {}
    for f, o in objs:
        where = "%s %s/%s" % (f, o.get("kind"), o.get("metadata", {}).get("name"))
        if not c.expect(o.get("apiVersion") and o.get("kind") and
                        o.get("metadata", {}).get("name"), "%s: no apiVersion/kind/name" % where):
            continue
        c.expect("namespace" not in o["metadata"], "%s: sets a namespace" % where)
        tpl = pod_template(o)
        if tpl is None:
            continue
        labels = tpl.get("metadata", {}).get("labels", {})
        spec = tpl.get("spec", {})
        for k in spec:
            c.expect(k in POD_KEYS, "%s: unknown pod spec field %s" % (where, k))
        psc = spec.get("securityContext", {})
        c.expect(psc.get("runAsNonRoot") is True, "%s: pod not runAsNonRoot" % where)
        if o["kind"] == "Deployment":
            deployments[o["metadata"]["name"]] = (o, labels)
            c.expect(selects(o["spec"].get("selector", {}).get("matchLabels"), labels),
                     "%s: selector does not match the pod labels" % where)
        for ct in spec.get("containers", []):
            cw = "%s container %s" % (where, ct.get("name"))
            for k in ct:
                c.expect(k in CONTAINER_KEYS, "%s: unknown container field %s" % (cw, k))
            c.expect(ct.get("image"), "%s: no image" % cw)
            c.expect(ct.get("resources", {}).get("requests") and
                     ct.get("resources", {}).get("limits", {}).get("memory"),
                     "%s: no resource requests and memory limit" % cw)
            sc = ct.get("securityContext", {})
            c.expect(sc.get("readOnlyRootFilesystem") is True, "%s: root not read-only" % cw)
            c.expect(sc.get("allowPrivilegeEscalation") is False,
                     "%s: privilege escalation allowed" % cw)
            c.expect(sc.get("capabilities", {}).get("drop") == ["ALL"],
                     "%s: capabilities not dropped" % cw)
            for ef in ct.get("envFrom", []):
                if "configMapRef" in ef:
                    c.expect(ef["configMapRef"]["name"] in configmaps,
                             "%s: no ConfigMap %s" % (cw, ef["configMapRef"]["name"]))
                if "secretRef" in ef:
                    c.expect(ef["secretRef"]["name"] in secrets,
                             "%s: no Secret %s" % (cw, ef["secretRef"]["name"]))
            if o["kind"] == "Deployment":
                comp = labels.get("app.kubernetes.io/component")
                if comp == "api":
                    c.expect(ct.get("readinessProbe", {}).get("httpGet", {}).get("path")
                             == "/ready", "%s: readiness is not GET /ready" % cw)
                    c.expect(ct.get("livenessProbe", {}).get("httpGet", {}).get("path")
                             == "/health", "%s: liveness is not GET /health" % cw)
                else:
                    c.expect("livenessProbe" in ct, "%s: no liveness probe" % cw)
    hpa_for, pdb_for = {}, set()
    for f, o in objs:
        k, name = o.get("kind"), o.get("metadata", {}).get("name")
        if k == "Service":
            sel = o.get("spec", {}).get("selector", {})
            c.expect(any(selects(sel, lb) for _, lb in deployments.values()),
                     "Service %s selects no Deployment's pods" % name)
        if k == "PodDisruptionBudget":
            sel = o.get("spec", {}).get("selector", {}).get("matchLabels", {})
            hit = [d for d, (_, lb) in deployments.items() if selects(sel, lb)]
            c.expect(len(hit) == 1, "PDB %s selects %d Deployments" % (name, len(hit)))
            pdb_for |= set(hit)
        if k == "HorizontalPodAutoscaler":
            c.expect(o.get("apiVersion") == "autoscaling/v2", "HPA %s: not autoscaling/v2" % name)
            ref = o.get("spec", {}).get("scaleTargetRef", {})
            c.expect(ref.get("kind") == "Deployment" and ref.get("name") in deployments,
                     "HPA %s scales no Deployment of these manifests" % name)
            for m in o.get("spec", {}).get("metrics", []):
                ext = m.get("external", {}).get("metric", {})
                c.expect(m.get("type") == "External" and
                         ext.get("name") == "conveyor_queue_lag_seconds",
                         "HPA %s: not on the External metric conveyor_queue_lag_seconds" % name)
                hpa_for[ref.get("name")] = ext.get("selector", {}).get("matchLabels", {}).get(
                    "type")
    workers = {}
    for d, (o, labels) in deployments.items():
        if labels.get("app.kubernetes.io/component") != "worker":
            continue
        cmd = pod_template(o)["spec"]["containers"][0].get("command", [])
        t = cmd[cmd.index("--types") + 1] if "--types" in cmd else None
        workers[t] = d
        c.expect(labels.get("conveyor.io/job-type") == t,
                 "%s: label conveyor.io/job-type is not its --types %s" % (d, t))
        c.expect(hpa_for.get(d) == t, "%s: no HPA on the queue lag of type %s" % (d, t))
        c.expect(d in pdb_for, "%s: no PodDisruptionBudget" % d)
    for t in job_types(root):
        c.expect(t in workers, "no worker Deployment for job type %s" % t)
    kinds = {o.get("kind") for _, o in objs}
    for want in ("ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "CronJob", "Job"):
        c.expect(want in kinds, "no %s" % want)
    if outdir:
        with open(os.path.join(outdir, "k8s.json"), "w") as f:
            json.dump([{"file": fn, "object": o} for fn, o in objs], f)
    return c


SYSTEMD_REQUIRED = ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                    "PrivateTmp=yes", "PrivateDevices=yes", "ProtectKernelTunables=yes",
                    "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
                    "ProtectControlGroups=yes",
                    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                    "LockPersonality=yes", "MemoryDenyWriteExecute=yes",
                    "SystemCallFilter=@system-service", "CapabilityBoundingSet=",
                    "EnvironmentFile=/etc/conveyor/conveyor.env", "Restart=on-failure"]


def check_units(root, units):
    """units: {file: text}"""
    c = Check("systemd units: the hardening options, a conveyor user, the env file, "
              "Restart=on-failure")
    c.expect(len(units) == 3, "expected 3 units in deploy/, found %d" % len(units))
    for f, text in units.items():
        lines = {ln.strip() for ln in text.splitlines()}
        for want in SYSTEMD_REQUIRED:
            c.expect(want in lines, "%s: no %s" % (f, want))
        c.expect("User=conveyor" in lines or "DynamicUser=yes" in lines,
                 "%s: neither User=conveyor nor DynamicUser=yes" % f)
    return c


# ---- driver -------------------------------------------------------------------------------


def load_all(root):
    d = os.path.join(root, "deploy")
    kust = yaml.safe_load(read(os.path.join(d, "k8s/kustomization.yaml")))
    objs = []
    for f in kust.get("resources", []):
        p = os.path.join(d, "k8s", f)
        if os.path.exists(p):
            objs += [(f, o) for o in load_yaml_docs(p)]
    return {
        "alerts": yaml.safe_load(read(os.path.join(d, "prometheus/alerts.yml"))),
        "tests": yaml.safe_load(read(os.path.join(d, "prometheus/alerts.test.yml"))),
        "contract": metric_contract(root),
        "dash": json.loads(read(os.path.join(d, "grafana/dashboards/conveyor.json"))),
        "compose": yaml.safe_load(read(os.path.join(d, "compose.yaml"))),
        "prom": yaml.safe_load(read(os.path.join(d, "prometheus/prometheus.yml"))),
        "env_example": read(os.path.join(d, ".env.example")),
        "kust": kust,
        "objs": objs,
        "units": {os.path.basename(f): read(f) for f in sorted(glob.glob(d + "/*.service"))},
    }


def run_all(root, x, outdir=None):
    _, records = alert_rules(x["alerts"])
    return [
        check_parse(root),
        check_alerts(root, x["alerts"], x["tests"], x["contract"]),
        check_dashboard(root, x["dash"], x["contract"], records, outdir),
        check_compose(root, x["compose"], x["env_example"], x["prom"]),
        check_k8s(root, x["kust"], x["objs"], outdir),
        check_units(root, x["units"]),
    ]


def report(checks):
    failed = 0
    for c in checks:
        if c.problems:
            failed += 1
            print("FAIL %s" % c.name)
            for p in c.problems:
                print("       %s" % p)
        else:
            print("ok   %s" % c.name)
    return failed


def selftest(root):
    """Break each input in one way and demand that the check meant for it reports that very
    break (a problem containing the needle), on top of the real files passing."""
    base = load_all(root)

    def obj(x, kind, name):
        return next(o for _, o in x["objs"] if o["kind"] == kind and o["metadata"]["name"] == name)

    def rule(x, name):
        return next(r for g in x["alerts"]["groups"] for r in g["rules"] if r.get("alert") == name)

    # what: (index of the check in run_all, the break, a word its report must contain)
    breaks = {
        "an alert reads a metric not in METRICS.md":
            (1, lambda x: rule(x, "ConveyorNoWorkers").update(expr="max(conveyor_wrokers_live) == 0"),
             "conveyor_wrokers_live"),
        "an alert without a runbook":
            (1, lambda x: rule(x, "ConveyorHeldMoney")["annotations"].pop("runbook"),
             "ConveyorHeldMoney: no runbook"),
        "an alert no test makes fire":
            (1, lambda x: x["tests"].update(tests=[t for t in x["tests"]["tests"]
                                                   if "breaker open" not in t["name"]]),
             "ConveyorBreakerOpen: no test case where it fires"),
        "a panel reads a metric not in METRICS.md":
            (2, lambda x: x["dash"]["panels"][1]["targets"][0].update(
                expr="sum(rate(activation_request_total[5m]))"), "activation_request_total"),
        "a panel on a fixed data source":
            (2, lambda x: x["dash"]["panels"][1].update(datasource={"uid": "abc"}),
             "data source not"),
        "seed 003's worker status panel missing":
            (2, lambda x: x["dash"].update(panels=[p for p in x["dash"]["panels"]
                                                   if p.get("title") != "Worker status"]),
             "Worker status"),
        "depends_on names no service":
            (3, lambda x: x["compose"]["services"]["api"]["depends_on"].update(
                {"postgress": {"condition": "service_healthy"}}), "postgress"),
        "a hard-coded password":
            (3, lambda x: x["compose"]["services"]["postgres"]["environment"].update(
                POSTGRES_PASSWORD="hunter2"), "POSTGRES_PASSWORD"),
        "Prometheus scrapes a host that is no service":
            (3, lambda x: x["prom"]["scrape_configs"][0]["static_configs"][0].update(
                targets=["conveyor-api:8080"]), "conveyor-api:8080"),
        "a job type without a worker service":
            (3, lambda x: x["compose"]["services"].pop("worker-tracking-push"), "tracking-push"),
        "a container field misspelt":
            (4, lambda x: obj(x, "Deployment", "conveyor-api")["spec"]["template"]["spec"][
                "containers"][0].update(readinesProbe={}), "readinesProbe"),
        "liveness not on /health":
            (4, lambda x: obj(x, "Deployment", "conveyor-api")["spec"]["template"]["spec"][
                "containers"][0]["livenessProbe"]["httpGet"].update(path="/ready"),
             "liveness is not GET /health"),
        "an HPA on another job type":
            (4, lambda x: obj(x, "HorizontalPodAutoscaler", "conveyor-worker-noop")["spec"][
                "metrics"][0]["external"]["metric"]["selector"]["matchLabels"].update(
                    type="activation"), "no HPA on the queue lag of type noop"),
        "a Service that selects nothing":
            (4, lambda x: obj(x, "Service", "conveyor-api")["spec"]["selector"].update(
                {"app.kubernetes.io/component": "apl"}), "selects no Deployment"),
        "a unit without MemoryDenyWriteExecute":
            (5, lambda x: x["units"].update({"conveyor-api.service": x["units"][
                "conveyor-api.service"].replace("MemoryDenyWriteExecute=yes", "")}),
             "MemoryDenyWriteExecute"),
    }
    missed = []
    clean = [c for c in run_all(root, base) if c.problems]
    for c in clean:
        print("MISS selftest: the real files fail %s" % c.name)
        missed.append(c.name)
    for what, (idx, mutate, needle) in breaks.items():
        x = copy.deepcopy(base)
        mutate(x)
        hits = [p for p in run_all(root, x)[idx].problems if needle in p]
        print("%s selftest: %s -> %s" % ("ok  " if hits else "MISS", what,
                                         hits[0] if hits else "not caught"))
        if not hits:
            missed.append(what)
    # the extractor itself, on shapes the files above do not all have
    got = promql_metrics('histogram_quantile(0.9, sum by (le) (rate(a_b_bucket{x="y"}[5m])))'
                         ' > on (type) group_left () c:d or vector(1e3) offset 5m and $x')
    ok = got == {"a_b_bucket", "c:d"}
    print("%s selftest: PromQL names of a sample expression -> %s" % ("ok  " if ok else "MISS",
                                                                        sorted(got)))
    if not ok:
        missed.append("promql_metrics")
    return 1 if missed else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "--selftest":
        return selftest(argv[2])
    if len(argv) != 3:
        print("usage: check.py ROOT OUTDIR | check.py --selftest ROOT", file=sys.stderr)
        return 2
    return 1 if report(run_all(argv[1], load_all(argv[1]), argv[2])) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
