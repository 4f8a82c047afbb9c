// lakevec report: the run list and a run's drill-down, built from the packed
// runs (lakevec/report/drilldown.py) only when needed. Text is set with
// textContent, never parsed as HTML. No library, no network.
"use strict";
(function () {
  var PACK = null, F = {}, S = [], FILTERED = [], PAGE = 0, PROMPTS = null, TEXTS = {};
  var PAGE_SIZE = parseInt(document.body.getAttribute("data-page-size"), 10) || 50;
  var state = { q: "", outcome: "", runtime: "", day: "" };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }
  function str(i) { return i === null || i === undefined ? null : S[i]; }
  function get(run, name) { return run[F[name]]; }

  // The prompts and the text chunks come after this script in the page: use
  // one only once the parser is past it (its next sibling exists) or done.
  function parsed(id) {
    var node = $(id);
    return node && (node.nextSibling || document.readyState !== "loading") ? node : null;
  }
  function prompts() {
    if (PROMPTS === null) {
      var node = parsed("runs-prompts");
      if (node) PROMPTS = JSON.parse(node.textContent);
    }
    return PROMPTS;
  }
  function texts(pos) {
    var k = Math.floor(pos / PACK.text_chunk);
    if (!TEXTS[k]) {
      var node = parsed("runs-text-" + k);
      if (!node) return null;
      TEXTS[k] = JSON.parse(node.textContent);
    }
    return TEXTS[k][pos % PACK.text_chunk];
  }
  function bundleOf(r) {
    var b = get(r, "bundle");
    if (b === null) return null;
    var x = PACK.bundles[b];
    return { retrieved_playbooks: x[0], prior_successful_outputs: x[1], failure_patterns: x[2],
             validation_steps: x[3], bundle_token_estimate: x[4] };
  }

  function load() {
    PACK = JSON.parse($("runs-index").textContent);
    PACK.fields.forEach(function (name, i) { F[name.replace(/[*\[\]]/g, "")] = i; });
    S = PACK.strings;
    var seen = {};
    PACK.runs.forEach(function (r) { seen[str(get(r, "runtime"))] = 1; });
    Object.keys(seen).sort().forEach(function (name) {
      $("runtime").appendChild(el("option", { value: name, text: name }));
    });
  }

  function matches(r) {
    if (state.runtime && str(get(r, "runtime")) !== state.runtime) return false;
    if (state.day && str(get(r, "day")) !== state.day) return false;
    if (state.outcome === "passed" && !get(r, "passed")) return false;
    if (state.outcome === "failed" && get(r, "passed")) return false;
    if (state.outcome === "escalated" && !get(r, "escalated")) return false;
    if (state.q) {
      var q = state.q;
      if (get(r, "id").toLowerCase().indexOf(q) < 0 &&
          str(get(r, "task")).toLowerCase().indexOf(q) < 0) return false;
    }
    return true;
  }

  function refilter() {
    FILTERED = [];
    for (var i = 0; i < PACK.runs.length; i++) if (matches(PACK.runs[i])) FILTERED.push(i);
    PAGE = 0;
    draw();
  }

  function outcome(r) {
    if (get(r, "passed")) return get(r, "escalated") ? "pass (escalated)" : "pass";
    return get(r, "escalated") ? "fail (escalated)" : "fail";
  }

  function draw() {
    var body = $("run-list").tBodies[0];
    body.textContent = "";
    var start = PAGE * PAGE_SIZE, end = Math.min(FILTERED.length, start + PAGE_SIZE);
    for (var i = start; i < end; i++) {
      var r = PACK.runs[FILTERED[i]], task = str(get(r, "task"));
      var tr = el("tr", { "data-run": get(r, "id"), "data-index": String(FILTERED[i]),
                          tabindex: "0", "class": get(r, "passed") ? "row-ok" : "row-bad" },
        el("td", { text: get(r, "at") }), el("td", { text: str(get(r, "runtime")) }),
        el("td", { text: str(get(r, "path")[0]) || str(get(r, "model_used")) }),
        el("td", { text: str(get(r, "retriever")) }),
        el("td", { text: outcome(r) + (get(r, "dry") ? " · dry run" : "") }),
        el("td", { "class": "task", text: task.length > 140 ? task.slice(0, 140) + "…" : task }));
      body.appendChild(tr);
    }
    $("count").textContent = FILTERED.length ?
      (start + 1) + "–" + end + " of " + FILTERED.length.toLocaleString("en") + " runs" :
      "no run matches";
    $("prev").disabled = PAGE === 0;
    $("next").disabled = end >= FILTERED.length;
  }

  function section(title) {
    var s = el("section", { "class": "dd-part" }, el("h4", { text: title }));
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) s.appendChild(arguments[i]);
    return s;
  }
  function pre(text, cls) { return el("pre", { "class": cls || "", text: text }); }

  function artifact(ref) {
    var a = PACK.artifacts[ref[0]];
    return { rag_id: S[a[0]], source_run_id: S[a[1]], title: S[a[2]], preview: S[a[3]],
             success_score: S[a[4]], tags: a[5].map(str), score: ref[1] };
  }
  function artifactList(refs, withPreview) {
    if (!refs.length) return el("p", { "class": "empty", text: "none" });
    var ol = el("ol");
    refs.forEach(function (ref) {
      var a = artifact(ref);
      ol.appendChild(el("li", null, el("code", { text: a.rag_id }), " ",
        el("strong", { text: a.title }), " · " + a.success_score + " · score " + a.score,
        withPreview ? pre(a.preview, "preview") : null));
    });
    return ol;
  }

  function retrieved(r, bundle) {
    var ids = get(r, "rag_ids"), titles = {};
    ids = ids === null ? (bundle ? bundle.retrieved_playbooks.map(function (ref) {
      return artifact(ref).rag_id; }) : []) : ids.map(str);
    if (bundle) bundle.retrieved_playbooks.forEach(function (ref) {
      var a = artifact(ref);
      titles[a.rag_id] = a.title + " (score " + a.score + ")";
    });
    if (!ids.length) return el("p", { "class": "empty", text: "no retrieval" });
    var ol = el("ol", { "class": "dd-retrieved" });
    ids.forEach(function (id) {
      ol.appendChild(el("li", null, el("code", { text: id }), " " + (titles[id] || "")));
    });
    return ol;
  }

  function bundleView(bundle) {
    if (!bundle) return el("p", { "class": "empty", text: "null (run without retrieval)" });
    var steps = el("ul");
    bundle.validation_steps.forEach(function (s) { steps.appendChild(el("li", { text: S[s] })); });
    return el("div", null,
      el("h5", { text: "prior successful outputs (exemplars)" }),
      artifactList(bundle.prior_successful_outputs, true),
      el("h5", { text: "failure patterns (warnings)" }), artifactList(bundle.failure_patterns, true),
      el("h5", { text: "validation checklist" }),
      bundle.validation_steps.length ? steps : el("p", { "class": "empty", text: "none" }),
      el("p", { text: "bundle token estimate: " + bundle.bundle_token_estimate }));
  }

  function replies(text) {
    var tape = text[1], box = el("div");
    if (Array.isArray(tape)) {
      tape.forEach(function (ex, i) {
        box.appendChild(el("h5", { text: "exchange " + (i + 1) + " of " + tape.length }));
        box.appendChild(pre(JSON.stringify(ex, null, 2), "dd-reply"));
      });
      if (tape.length) return box;
    } else if (typeof tape === "string") {
      box.appendChild(el("p", { "class": "empty", text: "tape: " + tape }));
    } else if (tape && tape.digest) {
      box.appendChild(el("p", { "class": "empty",
        text: "tape " + tape.digest + " recorded; this report does not load tapes yet" }));
    }
    box.appendChild(el("p", { "class": "meta",
      text: "final response as logged (the log keeps its first 4,000 characters):" }));
    box.appendChild(pre(text[0], "dd-response"));
    return box;
  }

  function open(index) {
    var r = PACK.runs[index], dd = $("drilldown"), bundle = bundleOf(r);
    var all = prompts(), text = texts(index), waiting = !all || !text;
    if (waiting) {  // the browser is still reading the page: show the rest when done
      document.addEventListener("DOMContentLoaded", function () { open(index); }, { once: true });
    }
    var reasons = get(r, "reasons").map(str), exp = str(get(r, "experiment"));
    var facts = [
      ["run id", get(r, "id")], ["recorded at", get(r, "at")],
      ["source", PACK.sources[get(r, "source")] + ":" + get(r, "line")],
      ["runtime", str(get(r, "runtime"))], ["models tried", get(r, "path").map(str).join(" → ")],
      ["model used", str(get(r, "model_used"))], ["retriever", str(get(r, "retriever"))],
      ["experiment", exp ? exp + " · arm " + str(get(r, "arm")) : "–"],
      ["duration", get(r, "duration_ms") === null ? "–" : get(r, "duration_ms") + " ms"],
      ["dry run", get(r, "dry") ? "yes" : "no"],
      ["verify", str(get(r, "verify")) || "not available (no verifier wired)"]];
    var dl = el("dl");
    facts.forEach(function (f) { dl.appendChild(el("dt", { text: f[0] }));
                                 dl.appendChild(el("dd", { text: f[1] })); });
    var gate = el("div", null, el("p", { "class": get(r, "passed") ? "pass" : "fail",
      text: get(r, "passed") ? "PASSED" : "FAILED" }));
    if (reasons.length) {
      var ul = el("ul");
      reasons.forEach(function (x) { ul.appendChild(el("li", { text: x })); });
      gate.appendChild(ul);
    }

    dd.textContent = "";
    dd.appendChild(el("div", { "class": "dd-head" }, el("h3", { text: "Run " + get(r, "id") }),
      el("button", { type: "button", id: "dd-close", text: "close ✕" })));
    dd.appendChild(dl);
    dd.appendChild(section("Task", pre(str(get(r, "task")), "dd-task")));
    dd.appendChild(section("Retrieved ids and titles", retrieved(r, bundle)));
    dd.appendChild(section("Context bundle", bundleView(bundle)));
    dd.appendChild(section("Prompt (rebuilt from the task and bundle with build_prompt)",
      el("details", null, el("summary", { text: "system message" }),
         pre(PACK.system_prompt || "")),
      waiting ? el("p", { "class": "empty", text: "loading…" }) :
        pre(all[get(r, "prompt")], "dd-prompt")));
    dd.appendChild(section("Model replies", waiting ?
      el("p", { "class": "empty", text: "loading…" }) : replies(text)));
    dd.appendChild(section("Gate", gate));
    dd.hidden = false;
    $("dd-close").addEventListener("click", function () { dd.hidden = true; });
    dd.scrollIntoView({ block: "start" });
    if (history.replaceState) history.replaceState(null, "", "#run=" + encodeURIComponent(get(r, "id")));
  }

  function findRun(id) {
    for (var i = 0; i < PACK.runs.length; i++) if (get(PACK.runs[i], "id") === id) return i;
    return -1;
  }

  function wire() {
    $("q").addEventListener("input", function (e) { state.q = e.target.value.toLowerCase(); refilter(); });
    $("outcome").addEventListener("change", function (e) { state.outcome = e.target.value; refilter(); });
    $("runtime").addEventListener("change", function (e) { state.runtime = e.target.value; refilter(); });
    $("prev").addEventListener("click", function () { PAGE = Math.max(0, PAGE - 1); draw(); });
    $("next").addEventListener("click", function () { PAGE += 1; draw(); });
    $("run-list").addEventListener("click", function (e) {
      var tr = e.target.closest("tr[data-index]");
      if (tr) open(parseInt(tr.getAttribute("data-index"), 10));
    });
    $("run-list").addEventListener("keydown", function (e) {
      var tr = e.target.closest("tr[data-index]");
      if (tr && e.key === "Enter") open(parseInt(tr.getAttribute("data-index"), 10));
    });
    var chart = $("chart-runs");
    chart.addEventListener("click", function (e) {
      var g = e.target.closest("g.day");
      if (!g) return;
      state.day = g.getAttribute("data-day");
      var tag = $("day-filter");
      tag.textContent = "";
      tag.appendChild(el("span", { text: "day " + state.day + " " }));
      var clear = el("button", { type: "button", text: "✕" });
      clear.addEventListener("click", function () { state.day = ""; tag.hidden = true; refilter(); });
      tag.appendChild(clear);
      tag.hidden = false;
      refilter();
      $("runs").scrollIntoView({ block: "start" });
    });
  }

  function start() {
    load();
    wire();
    refilter();
    document.body.setAttribute("data-ready", "1");
    var m = /^#run=(.+)$/.exec(location.hash);
    if (m) { var i = findRun(decodeURIComponent(m[1])); if (i >= 0) open(i); }
  }
  // The summary above is plain HTML: let it paint, then read the runs' index
  // while the browser goes on reading the prompts and texts below.
  setTimeout(start, 0);
})();
