/* TF/Keras compatibility matrix: the offline site (no framework, no network).
 *
 * Data arrives as <script> files assigning to window.COMPAT_DATA (Chromium refuses to fetch local files
 * from a file:// page): data/meta.js with the page, data/<format>.js when a view
 * needs that format, data/<format>.tb.js when a cell's traceback is shown. The state of the
 * page lives in the URL hash (#view=grid&scenario=cnn&format=h5&cell=<cell id>), so every
 * view and every cell has a permalink. Record text is only ever set as textContent.
 */
(function () {
  "use strict";
  var D = (window.COMPAT_DATA = window.COMPAT_DATA || {});
  var M = D.meta;
  var KEYS = ["view", "saver", "loader", "scenario", "format", "variant", "q", "cat", "cell"];
  var VIEWS = ["overview", "upgrade", "grid", "pair", "search", "changes", "history", "about"];
  var state = {};
  var renderToken = 0;
  var pending = {};
  var stackIx = {};
  var outIx = {};
  M.stacks.forEach(function (s, i) { stackIx[s.id] = i; });
  M.outcomes.forEach(function (o, i) { outIx[o.id] = i; });
  var STACKS = M.stacks.map(function (s) { return s.id; });
  var S = M.stride || 4;  // integers per cell in a grid's flat list
  var MEANT_TO_FAIL = "loads of a custom-object scenario without its custom objects (variant default where the " +
    "scenario has a custom_objects variant) are meant to fail and left out";
  var TRAINING = { resumed: "resumed: one more training step lands where the saver's did",
    state_lost: "optimizer state lost", diverges: "the resumed step diverges from the saver's",
    cannot_resume: "training cannot run", not_checked: "not checked" };

  // ------------------------------------------------------------------ helpers
  function $(id) { return document.getElementById(id); }
  function el(tag, attrs) {
    var node = document.createElement(tag);
    var k;
    for (k in attrs || {}) {
      if (!Object.prototype.hasOwnProperty.call(attrs, k) || attrs[k] === undefined || attrs[k] === null) continue;
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var kid = arguments[i];
      if (kid === null || kid === undefined || kid === false) continue;
      node.appendChild(typeof kid === "string" ? document.createTextNode(kid) : kid);
    }
    return node;
  }
  function say(text) { $("status").textContent = text || ""; }
  function load(key) {
    if (D[key]) return Promise.resolve(D[key]);
    if (!M.files[key]) return Promise.reject(new Error("no data file for " + key));
    if (!pending[key]) {
      pending[key] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = M.files[key];
        s.onload = function () { if (D[key]) resolve(D[key]); else reject(new Error(M.files[key] + " defines no data")); };
        s.onerror = function () { delete pending[key]; reject(new Error("cannot load " + M.files[key])); };
        document.head.appendChild(s);
      });
    }
    return pending[key];
  }
  function loadAll(formats) { return Promise.all(formats.map(load)); }
  function hex(c) { return [1, 3, 5].map(function (i) { return parseInt(c.slice(i, i + 2), 16); }); }
  function viridis(share) {
    var t = M.viridis, pos = Math.min(1, Math.max(0, share)) * (t.length - 1);
    var i = Math.min(Math.floor(pos), t.length - 2), f = pos - i, a = hex(t[i]), b = hex(t[i + 1]);
    return "#" + a.map(function (x, k) { return ("0" + Math.round(x + (b[k] - x) * f).toString(16)).slice(-2); }).join("");
  }
  function luminance(fill) {  // WCAG relative luminance
    var c = hex(fill).map(function (x) { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function ink(fill) {  // black or white, whichever contrasts more with the fill (>= 4.58:1 either way)
    var y = luminance(fill);
    return (y + 0.05) / 0.05 >= 1.05 / (y + 0.05) ? "#000" : "#fff";
  }
  function cellId(scenario, format, saver, loader, variant) {
    return scenario + ":" + format + ":" + saver + "->" + loader + ":" + variant;
  }
  function parseId(id) {
    var m = /^([^:]+):(.+):([^:>]+)->([^:]+):([^:]+)$/.exec(id || "");
    return m ? { scenario: m[1], format: m[2], saver: m[3], loader: m[4], variant: m[5] } : null;
  }
  function scenarioDoc(s) { return (M.scenarioDocs && M.scenarioDocs[s]) || ""; }
  function scenarioNotes(names) {  // the visible captions of the scenarios a table names
    var dl = el("dl", { id: "scenario-notes", cls: "scn", "aria-label": "What each scenario saves" });
    names.forEach(function (s) {
      if (!scenarioDoc(s)) return;
      dl.appendChild(el("dt", null, el("code", { text: s })));
      dl.appendChild(el("dd", { text: scenarioDoc(s) }));
    });
    return dl.childNodes.length ? el("div", null, el("h3", { cls: "note", text: "Scenarios" }), dl) : null;
  }
  function fixName(remedy) {
    var m = /fixed by ([^ ;(]+)/.exec(remedy || "");
    return m ? m[1] : "";
  }

  // The upgrade verdicts (explain's, written by the report): {loader: [line, detail lines...]} per
  // format and saver, or {} when the table has none for that saver.
  function loadVerdicts(fmt, saver) {
    var key = "verdict:" + fmt + ":" + saver;
    return M.files[key] ? load(key) : Promise.resolve({});
  }
  function verdictBox(lines, id) {  // the verdict line first, the scenarios behind each count under it
    var box = el("div", { id: id, cls: "verdict" }, el("p", { cls: "vline", text: lines[0] }));
    if (lines.length > 1) {
      var ul = el("ul");
      lines.slice(1).forEach(function (l) { ul.appendChild(el("li", { text: l.trim() })); });
      box.appendChild(el("details", null, el("summary", { text: "which scenarios" }), ul));
    }
    return box;
  }

  // -------------------------------------------------------------- cell access
  function gridsOf(F, scenario, variant) {
    var s = M.scenarios.indexOf(scenario);
    return F.grids.filter(function (g) { return g.s === s && (variant === undefined || g.v === variant); });
  }
  function cellOf(F, g, i, j) {
    var k = (i * g.lo.length + j) * S, c = g.c;
    if (c[k] < 0) return null;
    var note = F.notes[c[k + 1]];
    var saver = STACKS[g.sv[i]], loader = STACKS[g.lo[j]], scenario = M.scenarios[g.s];
    var remedy = c[k + 2] ? F.remedies[c[k + 2] - 1] : "";
    return {
      id: cellId(scenario, F.format, saver, loader, g.v), scenario: scenario, format: F.format, variant: g.v,
      saver: saver, loader: loader, outcome: M.outcomes[c[k]], category: note[0], phase: note[1], type: note[2],
      message: F.msgs[note[3]], source: note[4], tb: note[5], remedy: remedy, fixed: fixName(remedy),
      diff: c[k + 3] ? F.diffs[c[k + 3] - 1] : null, written: g.w[i] >= 0 ? F.written[g.w[i]] : "",
      prediction: note[6] || "", training: note[7] || "", trainingReason: note[8] !== undefined ? F.msgs[note[8]] : "",
      trainingDiff: S > 4 && c[k + 4] ? F.diffs[c[k + 4] - 1] : null,
      signature: note[9] !== undefined ? F.msgs[note[9]] : "",
      firstBad: note[10] || "", lastGood: note[11] || "", releaseNotes: note[12] || ""
    };
  }
  function findCell(id) {
    var p = parseId(id);
    if (!p || M.files[p.format] === undefined) return Promise.resolve(null);
    return load(p.format).then(function (F) {
      var g = gridsOf(F, p.scenario, p.variant)[0];
      if (!g) return null;
      var i = g.sv.indexOf(stackIx[p.saver]), j = g.lo.indexOf(stackIx[p.loader]);
      return i < 0 || j < 0 ? null : cellOf(F, g, i, j);
    });
  }
  // The loader filter holds one loader or several (the search's multi-select): "a,b"
  function loaderList() { return state.loader ? String(state.loader).split(",") : []; }
  function wantLoader(lo) { return !state.loader || loaderList().indexOf(lo) >= 0; }
  function oneLoader() { var l = loaderList(); return l.length === 1 ? l[0] : ""; }
  function matches(c) {
    return (!state.saver || c.saver === state.saver) && wantLoader(c.loader) &&
      (!state.scenario || c.scenario === state.scenario) && (!state.variant || c.variant === state.variant);
  }
  function trainingNote(c) {
    return c.training && c.training !== "not_checked" && c.training !== "resumed" ? ", training " + c.training : "";
  }
  function cellButton(c, label) {
    var o = c.outcome;
    var text = o.symbol + (c.fixed ? M.fixedMark : "");
    var b = el("button", {
      type: "button", "data-cell": c.id, "data-outcome": o.id,
      "aria-label": (label || c.id) + ": " + o.id + trainingNote(c) + (c.category ? " (" + c.category + ")" : "") +
        (c.fixed ? "; fixed by " + c.fixed + " (verified)" : ""),
      title: (label || c.id) + "\n" + o.id + trainingNote(c) + (c.category ? " · " + c.category : "") +
        (c.remedy ? "\n" + c.remedy : ""),
      text: text
    });
    return el("td", { style: "background:" + o.color }, b);
  }

  // ------------------------------------------------------------ navigable tables
  function navigable(table) {
    var buttons = Array.prototype.slice.call(table.querySelectorAll("td button"));
    if (!buttons.length) return table;
    buttons.forEach(function (b, n) { b.tabIndex = n === 0 ? 0 : -1; });
    table.addEventListener("focusin", function (ev) {
      if (ev.target.tagName !== "BUTTON") return;
      buttons.forEach(function (b) { b.tabIndex = b === ev.target ? 0 : -1; });
    });
    table.addEventListener("keydown", function (ev) {
      var b = ev.target;
      if (b.tagName !== "BUTTON") return;
      var td = b.parentNode, tr = td.parentNode, rows = Array.prototype.slice.call(table.tBodies[0].rows);
      var r = rows.indexOf(tr), col = td.cellIndex, target = null;
      function step(dr, dc) {
        var ri = r + dr, ci = col + dc;
        while (ri >= 0 && ri < rows.length && ci >= 0 && ci < rows[ri].cells.length) {
          var found = rows[ri].cells[ci].querySelector("button");
          if (found) return found;
          ri += dr; ci += dc;
        }
        return null;
      }
      switch (ev.key) {
        case "ArrowRight": target = step(0, 1); break;
        case "ArrowLeft": target = step(0, -1); break;
        case "ArrowDown": target = step(1, 0); break;
        case "ArrowUp": target = step(-1, 0); break;
        case "Home": target = tr.querySelector("td button"); break;
        case "End": target = (function (all) { return all[all.length - 1] || null; })(tr.querySelectorAll("td button")); break;
        default: return;
      }
      ev.preventDefault();
      if (target) target.focus();
    });
    table.addEventListener("click", function (ev) {
      var b = ev.target.closest ? ev.target.closest("button") : null;
      if (b && b.dataset.cell) openCell(b.dataset.cell, false);
      else if (b && b.dataset.pair) go({ view: "pair", saver: b.dataset.saver, loader: b.dataset.loader, cell: "" });
    });
    return table;
  }
  // A table of cells in a scroller whose header row and first column stay in place. cols: names, or
  // {text, title}; a row: {label, title, cells, sum}; sumHead: the heading of the rows' verdict column,
  // which comes first after the row names (one line each, the full text on hover).
  function matrixTable(caption, corner, cols, rows, cls, sumHead) {
    var head = el("tr", null, el("th", { cls: "corner", scope: "col", text: corner }));
    if (sumHead) head.appendChild(el("th", { cls: "corner sumhead", scope: "col", text: sumHead }));
    cols.forEach(function (c) {
      head.appendChild(typeof c === "string" ? el("th", { scope: "col", text: c }) : el("th", { scope: "col", title: c.title || null, text: c.text }));
    });
    var body = el("tbody");
    rows.forEach(function (r) {
      var name = r.pick ? el("button", { type: "button", cls: "link pick", "data-pick": r.label, title: "the verdict for " + r.label + " in full",
        text: r.label, onclick: function () { go({ loader: r.label, cell: "" }); } }) : r.label;
      var tr = el("tr", null, el("th", { cls: "row", scope: "row", title: r.title || null }, name));
      if (sumHead) tr.appendChild(el("td", { cls: "sum" }, el("span", { title: r.sumTitle || r.sum, text: r.sum })));
      r.cells.forEach(function (td) { tr.appendChild(td || el("td", { cls: "empty" })); });
      body.appendChild(tr);
    });
    return el("div", { cls: "tscroll" }, navigable(el("table", { cls: "m " + (cls || "") }, el("caption", { cls: "note", text: caption }),
      el("thead", null, head), body)));
  }
  function legend() {
    var box = el("div", { cls: "legend", "aria-label": "Legend" });
    M.outcomes.forEach(function (o) {
      box.appendChild(el("span", { title: o.meaning }, el("span", { cls: "sw", style: "background:" + o.color, text: o.symbol }), " " + o.id));
    });
    box.appendChild(el("span", null, M.fixedMark + " fixed by a verified remedy"));
    return box;
  }

  // ------------------------------------------------------------------- views
  function overviewStats(token) {
    if (!state.scenario && !state.variant) return Promise.resolve(M.overview[state.format || ""]);
    var formats = state.format ? [state.format] : M.formats;
    return loadAll(formats).then(function (all) {
      var n = STACKS.length, stats = [];
      for (var k = 0; k < n * n; k++) stats.push([0, 0]);
      all.forEach(function (F) {
        F.grids.forEach(function (g) {
          if ((state.scenario && M.scenarios[g.s] !== state.scenario) || (state.variant && g.v !== state.variant) || g.x) return;
          for (var i = 0; i < g.sv.length; i++) {
            for (var j = 0; j < g.lo.length; j++) {
              var o = g.c[(i * g.lo.length + j) * S];
              if (o < 0 || M.outcomes[o].id === "not_applicable") continue;
              var s = stats[g.sv[i] * n + g.lo[j]];
              s[1] += 1; s[0] += M.outcomes[o].id === "ok" ? 1 : 0;
            }
          }
        });
      });
      return stats;
    });
  }
  function viewOverview(token, root) {
    return overviewStats(token).then(function (stats) {
      if (token !== renderToken) return;
      var n = STACKS.length;
      var used = function (axis, i) {
        for (var k = 0; k < n; k++) if (stats[axis ? k * n + i : i * n + k][1]) return true;
        return false;
      };
      var savers = STACKS.filter(function (s, i) { return (state.saver ? s === state.saver : used(0, i)); });
      var loaders = STACKS.filter(function (s, i) { return (state.loader ? wantLoader(s) : used(1, i)); });
      var what = [state.format || "every format", state.scenario || "every scenario", state.variant || "every load variant"].join(", ");
      if (M.headline) root.appendChild(el("p", { cls: "note headline-copy", text: M.headline.replace(/`/g, "") }));  // a phone's header leaves it out
      root.appendChild(el("h2", { text: "Saver × loader: per cent of cells that load and match (" + what + ")" }));
      root.appendChild(el("p", { cls: "note", text: "Rows: the stack that saved the model; columns: the stack that loaded it. " +
        "Each cell: per cent (rounded down) of the cells that could exist that loaded and whose predictions matched " +
        "(a trained model: and whose training resumed like the saver's); " + MEANT_TO_FAIL + "; " +
        "– where no cell could exist. Select a cell for every scenario and format of that pair." }));
      var rows = savers.map(function (sv) {
        return {
          label: sv, cells: loaders.map(function (lo) {
            var s = stats[stackIx[sv] * n + stackIx[lo]], pct = s[1] ? Math.floor(100 * s[0] / s[1]) : null;
            var fill = pct === null ? "#ffffff" : viridis(s[0] / s[1]);
            var label = sv + " → " + lo + ": " + (pct === null ? "no cell could exist" : pct + " % (" + s[0] + " of " + s[1] + " cells load and match)");
            return el("td", { style: "background:" + fill },
              el("button", { type: "button", "data-pair": "1", "data-saver": sv, "data-loader": lo, "aria-label": label,
                title: label, style: "color:" + (pct === null ? "#666" : ink(fill)), text: pct === null ? "–" : String(pct) }));
          })
        };
      });
      root.appendChild(matrixTable("saver \\ loader", "saver \\ loader", loaders, rows, "heat"));
      var scale = el("div", { cls: "scale", "aria-label": "Colour scale: 0 to 100 per cent" }, el("span", { text: "0 %" }));
      for (var k = 0; k <= 10; k++) {
        var f = viridis(k / 10);
        scale.appendChild(el("span", { style: "background:" + f + ";color:" + ink(f), text: String(10 * k) }));
      }
      scale.appendChild(el("span", { text: "100 %" }));
      root.appendChild(scale);
      root.appendChild(el("p", { cls: "note" }, "The same overview as an image: ", el("a", { href: "heatmap.svg", text: "heatmap.svg" }),
        "; the Markdown index: ", el("a", { href: "README.md", text: "README.md" }), "."));
    });
  }
  function pickDefaults(keys) {
    var changed = false;
    if (keys.indexOf("format") >= 0 && !state.format) { state.format = M.formats[0] || ""; changed = true; }
    if (keys.indexOf("saver") >= 0 && !state.saver) {
      state.saver = STACKS.indexOf("tf2.15") >= 0 ? "tf2.15" : STACKS[0] || ""; changed = true;
    }
    if (keys.indexOf("scenario") >= 0 && !state.scenario) {
      var g = M.grids.filter(function (x) { return !state.format || x[1] === state.format; })[0] || M.grids[0];
      if (g) { state.scenario = M.scenarios[g[0]]; changed = true; }
    }
    if (changed) { syncControls(); writeHash(); }
  }
  // The (scenario, variant) grids a view shows: the chosen variant, or every variant (default first).
  function variantsShown(F, s) {
    return M.variants.filter(function (v) { return (!state.variant || v === state.variant) && gridsOf(F, s, v).length; });
  }
  function viewUpgrade(token, root) {
    pickDefaults(["saver", "format"]);
    return Promise.all([load(state.format), loadVerdicts(state.format, state.saver)]).then(function (got) {
      if (token !== renderToken) return;
      var F = got[0], V = got[1];
      var saverIx = stackIx[state.saver];
      var scenarios = M.scenarios.filter(function (s) { return !state.scenario || s === state.scenario; });
      var cols = [];  // [scenario, variant, grid]
      scenarios.forEach(function (s) {
        variantsShown(F, s).forEach(function (v) {
          var g = gridsOf(F, s, v)[0];
          if (g.sv.indexOf(saverIx) >= 0) cols.push([s, v, g]);
        });
      });
      var which = state.variant ? "load variant " + state.variant : "every load variant";
      var chosen = oneLoader();
      if (chosen && V[chosen]) root.appendChild(verdictBox(V[chosen], "verdict"));
      else root.appendChild(el("p", { id: "verdict", cls: "verdict vline" }, chosen ?
        "No verdict: " + state.saver + " " + state.format + " → " + chosen + " has no cell in this table." :
        "Choose a loader (the filter above, or a loader's name in the table) for its verdict in full; each loader's " +
        "verdict is the column after its name."));
      root.appendChild(el("h2", { text: "Upgrade path: saved with " + state.saver + " as " + state.format + " (" + which + ")" }));
      root.appendChild(el("p", { cls: "note", text: "Every loading stack (rows) for each scenario (columns). The verdict " +
        "(as python -m runner explain --from SAVER --format FORMAT --to LOADER prints it) counts each scenario once, " +
        "loaded the documented way (with its custom objects where it has them); " + M.fixedMark +
        " marks a failing cell a remedy fixed when the runner re-ran it (verified against the saver's outputs). " +
        "Select a cell for its details; change the saver, format or variant with the filters above." }));
      if (!cols.length) { root.appendChild(el("p", { text: "No " + state.format + " artifact of " + state.saver + " in this table." })); return; }
      var loaders = STACKS.filter(wantLoader);
      var rows = [];
      loaders.forEach(function (lo) {
        var tds = cols.map(function (sv) {
          var g = sv[2], i = g.sv.indexOf(saverIx), j = g.lo.indexOf(stackIx[lo]);
          if (j < 0) return null;
          var c = cellOf(F, g, i, j);
          return c ? cellButton(c, lo + " loads " + sv[0] + (sv[1] !== "default" ? " (" + sv[1] + ")" : "")) : null;
        });
        if (tds.every(function (t) { return !t; })) return;
        var line = V[lo] ? V[lo][0] : "";
        rows.push({ label: lo, pick: true, cells: tds, sum: line.slice(line.indexOf(": ") + 2), sumTitle: line });
      });
      root.appendChild(matrixTable("loader \\ scenario", "loader \\ scenario",
        cols.map(function (sv) {
          return { text: sv[0] + (sv[1] !== "default" ? " · " + sv[1] : ""),
            title: sv[0] + (scenarioDoc(sv[0]) ? ": " + scenarioDoc(sv[0]) : "") + (sv[1] !== "default" ? " (load variant " + sv[1] + ")" : "") };
        }), rows, "upgrade", "verdict (documented way of loading)"));
      root.appendChild(legend());
      var notes = scenarioNotes(scenarios.filter(function (s) { return cols.some(function (c) { return c[0] === s; }); }));
      if (notes) root.appendChild(notes);
    });
  }
  function viewGrid(token, root) {
    pickDefaults(["format", "scenario"]);
    return load(state.format).then(function (F) {
      if (token !== renderToken) return;
      var variants = variantsShown(F, state.scenario);
      root.appendChild(el("h2", { text: state.scenario + " · " + state.format + (state.variant ? " · load variant " + state.variant : "") }));
      if (scenarioDoc(state.scenario)) root.appendChild(el("p", { id: "scenario-doc", text: state.scenario + ": " + scenarioDoc(state.scenario) }));
      if (!variants.length) {
        root.appendChild(el("p", { text: "No such grid: " + state.scenario + " has no " + state.format + " cells" +
          (state.variant ? " with load variant " + state.variant : "") + "." }));
        return;
      }
      root.appendChild(el("p", { cls: "note", text: "Rows: the stack that saved the model; columns: the stack that loaded it; " +
        (variants.length > 1 ? "one grid per load variant. " : "") + "Arrow keys move between cells; Enter shows a cell's details." }));
      var kinds = { mismatch: 0, training_mismatch: 0 };
      variants.forEach(function (variant) {
        var g = gridsOf(F, state.scenario, variant)[0];
        if (variants.length > 1 || variant !== "default") {
          root.appendChild(el("h3", { cls: "note", "data-variant": variant, text: "load variant " + variant +
            (g.x ? " (meant to fail: the scenario's custom objects are not passed; left out of the overview's percentages)" : "") }));
        }
        var si = [], lj = [];
        g.sv.forEach(function (s, i) { if (!state.saver || STACKS[s] === state.saver) si.push(i); });
        g.lo.forEach(function (s, j) { if (wantLoader(STACKS[s])) lj.push(j); });
        var rows = si.map(function (i) {
          return { label: STACKS[g.sv[i]], cells: lj.map(function (j) { var c = cellOf(F, g, i, j); return c ? cellButton(c) : null; }) };
        });
        root.appendChild(matrixTable("saver \\ loader (" + variant + ")", "saver \\ loader", lj.map(function (j) { return STACKS[g.lo[j]]; }), rows, "grid"));
        for (var k = 0; k < g.c.length; k += S) if (g.c[k] >= 0 && kinds[M.outcomes[g.c[k]].id] !== undefined) kinds[M.outcomes[g.c[k]].id] += 1;
      });
      if (kinds.mismatch || kinds.training_mismatch) {
        root.appendChild(el("p", { id: "grid-kinds", cls: "note", text: "Predictions differ: " + kinds.mismatch + " (" +
          M.outcomes[outIx.mismatch].symbol + "); predictions match, training does not resume: " + kinds.training_mismatch +
          " (" + M.outcomes[outIx.training_mismatch].symbol + ")." }));
      }
      root.appendChild(legend());
    });
  }
  function viewPair(token, root) {
    var loader = oneLoader();
    if (!state.saver || !loader) {
      root.appendChild(el("p", { text: "Choose a saver and one loader above, or select a cell of the overview." }));
      return Promise.resolve();
    }
    var formats = state.format ? [state.format] : M.formats;
    return loadAll(formats).then(function (all) {
      if (token !== renderToken) return;
      root.appendChild(el("h2", { text: "Saved with " + state.saver + ", loaded with " + loader }));
      var cols = [], colKeys = [];
      all.forEach(function (F) {
        M.variants.forEach(function (v) {
          if (state.variant && v !== state.variant) return;
          if (F.grids.some(function (g) { return g.v === v; })) { cols.push(F.format + (v === "default" ? "" : " · " + v)); colKeys.push([F, v]); }
        });
      });
      var rows = [];
      M.scenarios.forEach(function (s) {
        if (state.scenario && s !== state.scenario) return;
        var any = false;
        var tds = colKeys.map(function (fv) {
          var g = gridsOf(fv[0], s, fv[1])[0];
          if (!g) return null;
          var i = g.sv.indexOf(stackIx[state.saver]), j = g.lo.indexOf(stackIx[loader]);
          var c = i >= 0 && j >= 0 ? cellOf(fv[0], g, i, j) : null;
          if (!c) return null;
          any = true;
          return cellButton(c, s + " " + fv[0].format + " " + fv[1]);
        });
        if (any) rows.push({ label: s, title: scenarioDoc(s) ? s + ": " + scenarioDoc(s) : null, cells: tds });
      });
      root.appendChild(matrixTable("scenario \\ format", "scenario \\ format", cols, rows, "pair"));
      root.appendChild(legend());
      var notes = scenarioNotes(rows.map(function (r) { return r.label; }));
      if (notes) root.appendChild(notes);
    });
  }
  function span(ids) {  // "first … last (n)" in stack order, as errors.md spells a span
    var got = STACKS.filter(function (s) { return ids[s]; });
    return got.length === 1 ? got[0] : got[0] + " … " + got[got.length - 1] + " (" + got.length + ")";
  }
  function searchNames(q, root) {  // scenarios (name or description, which names its layers) and stacks (id or versions)
    var scen = M.scenarios.filter(function (s) { return (s + "\n" + scenarioDoc(s)).toLowerCase().indexOf(q) >= 0; });
    var stacks = M.stacks.filter(function (st) {
      return Object.keys(st).some(function (k) { return String(st[k] === null || st[k] === undefined ? "" : st[k]).toLowerCase().indexOf(q) >= 0; });
    });
    if (scen.length) {
      var ul = el("ul", { id: "search-scenarios", cls: "results" });
      scen.forEach(function (s) {
        ul.appendChild(el("li", null, el("button", { type: "button", cls: "link", "data-scenario": s, text: s,
          onclick: function () { go({ view: "grid", scenario: s, q: "", cell: "" }); } }), scenarioDoc(s) ? " — " + scenarioDoc(s) : ""));
      });
      root.appendChild(el("h3", { cls: "note", text: "Scenarios (" + scen.length + ")" }));
      root.appendChild(ul);
    }
    if (stacks.length) {
      var sl = el("ul", { id: "search-stacks", cls: "results" });
      stacks.forEach(function (st) {
        sl.appendChild(el("li", null, el("button", { type: "button", cls: "link", "data-stack": st.id, text: st.id,
          onclick: function () { go({ view: "upgrade", saver: st.id, q: "", cell: "" }); } }), " — " + stackLine(st.id).slice(st.id.length + 1) +
          " (its upgrade path)"));
      });
      root.appendChild(el("h3", { cls: "note", text: "Stacks (" + stacks.length + ")" }));
      root.appendChild(sl);
    }
  }
  function viewSearch(token, root) {
    var q = (state.q || "").trim().toLowerCase();
    root.appendChild(el("h2", { text: "Search" }));
    var pick = el("select", { id: "f-cat", "aria-label": "category", onchange: function (ev) { go({ cat: ev.target.value, cell: "" }); } },
      el("option", { value: "", text: "every category" }));
    Object.keys(M.categories).sort().forEach(function (k) { pick.appendChild(el("option", { value: k, text: k + " — " + M.categories[k][0] })); });
    pick.value = state.cat || "";
    root.appendChild(el("p", null, el("label", null, "Failing cells of ", pick)));
    var several = el("select", { id: "f-loaders", multiple: "multiple", size: "5", "aria-label": "loaders",
      onchange: function (ev) {
        var chosen = Array.prototype.filter.call(ev.target.options, function (o) { return o.selected; })
          .map(function (o) { return o.value; });
        go({ loader: chosen.join(","), cell: "" });
      } });
    STACKS.forEach(function (s) { several.appendChild(el("option", { value: s, text: s })); });
    Array.prototype.forEach.call(several.options, function (o) { o.selected = loaderList().indexOf(o.value) >= 0; });
    root.appendChild(el("p", null, el("label", null, "Loaded by (none: every loader; Ctrl/⌘-click for several) ", several)));
    if (!q && !state.cat) {
      root.appendChild(el("p", { text: "Type part of an error message, an exception type, a category (e.g. " +
        Object.keys(M.categories).slice(0, 3).join(", ") + "), a scenario, a layer or a stack in the search box above." }));
      return Promise.resolve();
    }
    var formats = state.format ? [state.format] : M.formats;
    say("searching…");
    return loadAll(formats).then(function (all) {
      if (token !== renderToken) return;
      if (q) searchNames(q, root);
      var groups = {}, order = [], total = 0;
      all.forEach(function (F) {
        var hit = F.notes.map(function (n) {
          return (!state.cat || n[0] === state.cat) &&
            [n[0], n[2], F.msgs[n[3]], n[7] || "", n[8] !== undefined ? F.msgs[n[8]] : ""].join("\n").toLowerCase().indexOf(q) >= 0;
        });
        F.grids.forEach(function (g) {
          for (var i = 0; i < g.sv.length; i++) {
            for (var j = 0; j < g.lo.length; j++) {
              var k = (i * g.lo.length + j) * S;
              if (g.c[k] < 0 || !hit[g.c[k + 1]]) continue;
              var c = cellOf(F, g, i, j);
              if (!matches(c)) continue;
              // one group per category and normalised message: tracebacks and messages that differ only in
              // line numbers, addresses or paths are one group (the signature errors.md groups by)
              var key = c.category + "\n" + (c.signature || (c.type ? c.type + ": " : "") + (c.message || "").split("\n")[0] ||
                c.outcome.id + " " + c.training);
              if (!groups[key]) { groups[key] = []; order.push(key); }
              groups[key].push(c);
              total += 1;
            }
          }
        });
      });
      var list = order.map(function (k) { return groups[k]; });
      list.sort(function (a, b) { return b.length - a.length; });
      say("");
      root.appendChild(el("h3", { cls: "note", text: "Failing cells" }));
      root.appendChild(el("p", { id: "search-count", text: total + " cells in " + list.length + " error signatures match " +
        (q ? "\u201c" + state.q + "\u201d" : "") + (q && state.cat ? " in " : "") + (state.cat ? "category " + state.cat : "") + "." }));
      var ul = el("ul", { cls: "results", id: "search-groups" });
      list.slice(0, 200).forEach(function (cells) {
        var c0 = cells[0], savers = {}, loaders = {}, fmts = {};
        cells.forEach(function (c) { savers[c.saver] = 1; loaders[c.loader] = 1; fmts[c.format] = 1; });
        var head = (c0.signature || (c0.type ? c0.type + ": " : "") + (c0.message || "").split("\n")[0]);
        var cat = c0.category ? M.categories[c0.category] : null;
        var ids = el("ul");
        cells.slice(0, 300).forEach(function (c) {
          ids.appendChild(el("li", null, el("button", { type: "button", cls: "link", "data-cell": c.id, text: c.id,
            onclick: function () { openCell(c.id, false); } }), " " + c.outcome.symbol + " " + c.outcome.id));
        });
        if (cells.length > 300) ids.appendChild(el("li", { text: "… and " + (cells.length - 300) + " more (narrow the filters)" }));
        var li = el("li", { cls: "group" },
          el("div", null, c0.category ? el("code", { text: c0.category }) : null, c0.category ? " " : null, el("b", { cls: "sig", text: head })),
          el("div", { cls: "note", text: cells.length + " cells · savers " + span(savers) + " · loaders " + span(loaders) + " · " +
            Object.keys(fmts).join(", ") + (cat ? " · " + cat[0] : "") }),
          cat ? el("div", { cls: "note why", text: cat[1] }) : null,
          el("details", null, el("summary", { text: "the " + cells.length + " cells" }), ids));
        ul.appendChild(li);
      });
      root.appendChild(ul);
    });
  }
  function inline(text) {
    var frag = document.createDocumentFragment();
    var parts = text.split(/(`[^`]+`|\*\*[^*]+\*\*)/);
    parts.forEach(function (p) {
      if (!p) return;
      if (p[0] === "`") {
        var body = p.slice(1, -1);
        if (parseId(body)) frag.appendChild(el("button", { type: "button", cls: "link", "data-cell": body, text: body, onclick: function () { openCell(body, false); } }));
        else frag.appendChild(el("code", { text: body }));
      } else if (p.slice(0, 2) === "**") frag.appendChild(el("b", { text: p.slice(2, -2) }));
      else frag.appendChild(document.createTextNode(p));
    });
    return frag;
  }
  function markdown(text) {
    var root = el("div", { cls: "changes" }), table = null, list = null;
    text.split("\n").forEach(function (line) {
      if (line.charAt(0) !== "|") table = null;
      if (line.slice(0, 2) !== "- ") list = null;
      if (/^#{1,3} /.test(line)) root.appendChild(el("h" + Math.min(4, line.indexOf(" ") + 1), null, inline(line.replace(/^#+ /, ""))));
      else if (line.charAt(0) === "|") {
        if (/^\|[-:| ]+\|$/.test(line)) return;
        var cells = line.slice(1, -1).split("|").map(function (s) { return s.trim(); });
        if (!table) { table = el("table"); root.appendChild(table); var tr = el("tr"); cells.forEach(function (c) { tr.appendChild(el("th", null, inline(c))); }); table.appendChild(tr); return; }
        var row = el("tr");
        cells.forEach(function (c) { row.appendChild(el("td", null, inline(c))); });
        table.appendChild(row);
      } else if (line.slice(0, 2) === "- ") {
        if (!list) { list = el("ul"); root.appendChild(list); }
        list.appendChild(el("li", null, inline(line.slice(2))));
      } else if (line.trim()) root.appendChild(el("p", null, inline(line)));
    });
    return root;
  }
  function viewChanges(token, root) {
    root.appendChild(markdown(M.changes || "No CHANGES.md."));
    root.appendChild(el("p", { cls: "note" }, "Also as ", el("a", { href: "CHANGES.md", text: "CHANGES.md" }), "."));
    return Promise.resolve();
  }
  function viewAbout(token, root) {
    root.appendChild(el("h2", { text: "Legend" }));
    var t = el("table", { cls: "m" }, el("tr", null, el("th", { text: "symbol" }), el("th", { text: "outcome" }), el("th", { text: "meaning" })));
    M.outcomes.forEach(function (o) {
      t.appendChild(el("tr", null, el("td", { style: "background:" + o.color, text: o.symbol }), el("td", null, el("code", { text: o.id })), el("td", { style: "text-align:left;padding:0 .4em", text: o.meaning })));
    });
    t.appendChild(el("tr", null, el("td", { text: M.fixedMark }), el("td", { text: "(mark)" }), el("td", { style: "text-align:left;padding:0 .4em", text: "a remedy the runner re-ran made this failing cell load and match (verified)" })));
    root.appendChild(t);
    root.appendChild(el("h2", { text: "Stacks (versions actually installed)" }));
    var keys = ["id", "python", "tensorflow", "keras", "backend", "keras_api", "env", "status"];
    var st = el("table", { cls: "m" }, el("tr", null));
    keys.forEach(function (k) { st.rows[0].appendChild(el("th", { text: k === "id" ? "stack" : k })); });
    M.stacks.forEach(function (s) {
      var tr = el("tr");
      keys.forEach(function (k) { tr.appendChild(el("td", { style: "padding:0 .4em", text: s[k] === undefined || s[k] === null ? "" : String(s[k]) })); });
      st.appendChild(tr);
    });
    root.appendChild(st);
    root.appendChild(el("h2", { text: "Failure categories" }));
    var dl = el("dl");
    Object.keys(M.categories).sort().forEach(function (k) {
      dl.appendChild(el("dt", null, el("code", { text: k }), " — " + M.categories[k][0]));
      dl.appendChild(el("dd", { text: M.categories[k][1] }));
    });
    root.appendChild(dl);
    return Promise.resolve();
  }
  var RENDER = { overview: viewOverview, upgrade: viewUpgrade, grid: viewGrid, pair: viewPair, search: viewSearch,
    changes: viewChanges, about: viewAbout,
    history: function (token, root) { return window.COMPAT_HISTORY.view(root, HOOK, token); } };
  // site/history.js (the History view and a cell's history across publications) is handed these
  var HOOK = { el: el, openCell: function (id) { return openCell(id, false); }, findCell: findCell,
    current: function (t) { return t === renderToken; } };

  // ----------------------------------------------------------------- details
  function copyRow(label, value) {
    var input = el("input", { type: "text", readonly: "readonly", value: value, "aria-label": label });
    var btn = el("button", { type: "button", text: "copy", "aria-label": "copy " + label, onclick: function () {
      input.select();
      var done = function () { btn.textContent = "copied"; };
      try {
        if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(value).then(done, function () { document.execCommand("copy"); done(); });
        else { document.execCommand("copy"); done(); }
      } catch (e) { btn.textContent = "select + Ctrl-C"; }
    } });
    return el("div", { cls: "cmd" }, input, btn);
  }
  function stackLine(id) {
    var s = M.stacks[stackIx[id]] || {};
    return id + (s.python ? " (Python " + s.python + (s.tensorflow ? ", TF " + s.tensorflow : "") + (s.keras ? ", Keras " + s.keras : "") + (s.backend ? ", " + s.backend : "") + ")" : s.status ? " (" + s.status + ")" : "");
  }
  function clearDetails() {  // no cell chosen: the panel holds nothing and takes no width
    var box = $("details");
    box.textContent = "";
    box.appendChild(el("p", { cls: "hint", text: "Select a cell (click, or Enter on a focused cell) for its details." }));
    box.classList.add("empty");
  }
  function showDetails(c) {
    var box = $("details");
    box.textContent = "";
    box.classList.remove("empty");
    if (!c) { box.appendChild(el("p", { text: "No such cell in this table." })); return; }
    var cat = c.category ? M.categories[c.category] : null;
    var dl = el("dl", null,
      el("dt", { text: "outcome" }), el("dd", { id: "d-outcome", text: c.outcome.symbol + " " + c.outcome.id + " — " + c.outcome.meaning }),
      el("dt", { text: "saver" }), el("dd", { text: stackLine(c.saver) }),
      el("dt", { text: "loader" }), el("dd", { text: stackLine(c.loader) }),
      el("dt", { text: "scenario" }), el("dd", { id: "d-scenario", text: c.scenario + (scenarioDoc(c.scenario) ? " — " + scenarioDoc(c.scenario) : "") }),
      el("dt", { text: "format" }), el("dd", { text: c.format + (c.written ? " (written as " + c.written + ")" : "") }),
      el("dt", { text: "load variant" }), el("dd", { text: c.variant }),
      c.phase ? el("dt", { text: "phase" }) : null, c.phase ? el("dd", { text: c.phase }) : null,
      c.prediction ? el("dt", { text: "predictions" }) : null,
      c.prediction ? el("dd", { id: "d-prediction", text: (c.prediction === "match" ? "match the saver's" : "differ from the saver's") +
        (c.diff !== null ? " (max |diff| " + c.diff + ")" : "") }) : null,
      !c.prediction && c.diff !== null ? el("dt", { text: "max |diff|" }) : null, !c.prediction && c.diff !== null ? el("dd", { text: String(c.diff) }) : null,
      c.training ? el("dt", { text: "training" }) : null,
      c.training ? el("dd", { id: "d-training", text: c.training + " — " + (TRAINING[c.training] || "") +
        (c.trainingDiff !== null ? " (max |diff| " + c.trainingDiff + ")" : "") + (c.trainingReason ? ": " + c.trainingReason : "") }) : null,
      c.source && c.source !== "load" ? el("dt", { text: "from" }) : null,
      c.source && c.source !== "load" ? el("dd", { text: { save: "the save (nothing to load)", env: "the loading stack (unavailable)", none: "no record yet" }[c.source] || c.source }) : null);
    var close = el("button", { type: "button", cls: "close", "aria-label": "close the details", text: "×",
      onclick: function () { go({ cell: "" }); } });
    box.appendChild(el("div", { cls: "dhead" }, el("h2", { id: "d-id", text: c.id }), close));
    var verdict = el("div", { id: "d-verdict-slot" });
    box.appendChild(verdict);
    loadVerdicts(c.format, c.saver).then(function (V) {
      if (V[c.loader] && verdict.parentNode) verdict.appendChild(verdictBox(V[c.loader], "d-verdict"));
    }, function (e) { verdict.textContent = e.message; });
    box.appendChild(dl);
    if (c.firstBad) {
      var bis = el("p", { id: "d-bisect" }, el("b", { text: "first failing release: " }),
        c.firstBad + (c.lastGood ? " (was ok in " + c.lastGood + ")" : ""));
      if (/^https?:\/\//.test(c.releaseNotes)) bis.appendChild(el("span", null, " — ", el("a", { href: c.releaseNotes, rel: "noopener", text: "release notes" })));
      box.appendChild(bis);
    }
    if (c.category) box.appendChild(el("p", null, el("b", { text: "Category " + c.category + (cat ? " — " + cat[0] : "") + ". " }), cat ? cat[1] : ""));
    box.appendChild(el("p", { id: "d-remedy" }, el("b", { text: "Verified remedies: " }), c.remedy || (c.outcome.id === "ok" ? "none needed" : "none re-run for this cell")));
    if (c.type || c.message) box.appendChild(el("div", null, el("b", { text: "Message" }), el("pre", { text: (c.type ? c.type + ": " : "") + (c.message || "") })));
    if (c.type || c.message) {
      var tb = el("pre", { id: "d-tb", text: "loading…" });
      box.appendChild(el("details", null, el("summary", { text: "Traceback tail" }), tb));
      load(c.format + ".tb").then(function (T) { tb.textContent = T[c.tb] || "(none recorded)"; }, function (e) { tb.textContent = e.message; });
    }
    box.appendChild(el("p", null, el("b", { text: "Cell id and commands" })));
    box.appendChild(copyRow("cell id", c.id));
    box.appendChild(copyRow("explain command", "python -m runner explain '" + c.id + "'"));
    if (c.source === "load") box.appendChild(copyRow("repro command", "python -m runner repro '" + c.id + "' --out repro"));
    var link = location.href.split("#")[0] + "#" + hashOf({ cell: c.id });
    box.appendChild(el("p", null, el("a", { id: "d-permalink", href: link, text: "Permalink to this cell" })));
    if (window.COMPAT_HISTORY) box.appendChild(window.COMPAT_HISTORY.cellPanel(c, HOOK));
  }
  function markSelected(id) {
    Array.prototype.forEach.call(document.querySelectorAll("td.sel"), function (td) { td.classList.remove("sel"); });
    var b = id ? document.querySelector('button[data-cell="' + (window.CSS && CSS.escape ? CSS.escape(id) : id) + '"]') : null;
    if (b && b.parentNode.tagName === "TD") b.parentNode.classList.add("sel");
    return b;
  }
  function openCell(id, focusIt) {
    state.cell = id;
    writeHash();
    return findCell(id).then(function (c) {
      showDetails(c);
      var b = markSelected(id);
      if (focusIt && b) b.focus();
      else if (focusIt) $("details").focus();
    }, function (e) { say(e.message); });
  }

  // -------------------------------------------------------------- state & hash
  function hashOf(s) {
    return KEYS.filter(function (k) { return s[k]; }).map(function (k) { return k + "=" + encodeURIComponent(s[k]); }).join("&");
  }
  function readHash() {
    var h = location.hash.replace(/^#/, ""), s = {};
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0 && KEYS.indexOf(kv.slice(0, i)) >= 0) {
        try { s[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); } catch (e) { /* a malformed hash is ignored */ }
      }
    });
    if (s.cell && !s.view) {
      var p = parseId(s.cell);
      if (p) { s.view = "grid"; s.scenario = p.scenario; s.format = p.format; s.variant = p.variant; }
    }
    if (VIEWS.indexOf(s.view) < 0) s.view = "overview";
    state = s;
  }
  function writeHash() {
    var h = hashOf(state);
    if (location.hash.replace(/^#/, "") !== h) history.replaceState(null, "", h ? "#" + h : location.pathname);
  }
  function go(changes) {
    Object.keys(changes).forEach(function (k) { state[k] = changes[k]; });
    var h = hashOf(state);
    if (location.hash.replace(/^#/, "") !== h) history.pushState(null, "", "#" + h);
    render();
  }
  function fillSelect(sel, values, all) {
    sel.appendChild(el("option", { value: "", text: all }));
    values.forEach(function (v) { sel.appendChild(el("option", { value: v, text: v })); });
  }
  function syncControls() {
    var many = $("f-loader").querySelector("option[data-several]");
    if (many) many.parentNode.removeChild(many);
    if (loaderList().length > 1) {
      $("f-loader").appendChild(el("option", { value: state.loader, "data-several": "1", text: loaderList().length + " loaders" }));
    }
    ["saver", "loader", "scenario", "format", "variant"].forEach(function (k) { $("f-" + k).value = state[k] || ""; });
    if (document.activeElement !== $("f-q")) $("f-q").value = state.q || "";
    Array.prototype.forEach.call(document.querySelectorAll("#tabs a"), function (a) {
      a.setAttribute("aria-selected", a.dataset.view === state.view ? "true" : "false");
    });
  }
  function render() {
    var token = ++renderToken;
    syncControls();
    var root = $("view");
    root.textContent = "";
    root.setAttribute("data-view", state.view);
    say("");
    if (!state.cell) clearDetails();  // a view or filter change leaves no stale cell beside it
    return Promise.resolve(RENDER[state.view](token, root)).then(function () {
      if (token !== renderToken) return;
      root.setAttribute("data-ready", "1");
      if (!window.COMPAT_FIRST_PAINT_MS) window.COMPAT_FIRST_PAINT_MS = performance.now();
      if (state.cell) return openCell(state.cell, false);
      clearDetails();
      markSelected("");
    }, function (e) { say("Cannot show this view: " + e.message); });
  }
  function init() {
    // "Selection: <what>: stacks …; scenarios …": the head on one line, the lists on demand
    var cut = M.selection.indexOf(": stacks ");
    var sel = $("selection");
    sel.appendChild(document.createTextNode((cut > 0 ? M.selection.slice(0, cut) : M.selection) + " — " + M.cells + " cells. "));
    if (cut > 0) sel.appendChild(el("details", null, el("summary", { text: "which stacks, scenarios and formats" }), M.selection.slice(cut + 2)));
    if (M.headline) sel.parentNode.insertBefore(el("p", { id: "headline", cls: "note", text: M.headline.replace(/`/g, "") }), sel.nextSibling);
    fillSelect($("f-saver"), STACKS, "all savers");
    fillSelect($("f-loader"), STACKS, "all loaders");
    fillSelect($("f-scenario"), M.scenarios, "all scenarios");
    Array.prototype.forEach.call($("f-scenario").options, function (o) { if (scenarioDoc(o.value)) o.title = scenarioDoc(o.value); });
    fillSelect($("f-format"), M.formats, "all formats");
    fillSelect($("f-variant"), M.variants, "all variants");
    ["saver", "loader", "scenario", "format", "variant"].forEach(function (k) {
      $("f-" + k).addEventListener("change", function (ev) { var c = {}; c[k] = ev.target.value; c.cell = ""; go(c); });
    });
    var typing = null;
    $("f-q").addEventListener("input", function (ev) {
      clearTimeout(typing);
      typing = setTimeout(function () { go({ q: ev.target.value, view: "search", cell: "" }); }, 250);
    });
    $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); go({ q: $("f-q").value, view: "search", cell: "" }); });
    $("f-reset").addEventListener("click", function () { state = { view: state.view }; go({}); });
    Array.prototype.forEach.call(document.querySelectorAll("#tabs a"), function (a) {
      a.addEventListener("click", function (ev) { ev.preventDefault(); go({ view: a.dataset.view, cell: "" }); });
    });
    // "Skip to the table" moves the focus to the view's first cell (or the view): the page, its view and
    // filters stay (its #main target would otherwise replace the state kept in the hash)
    document.querySelector("a.skip").addEventListener("click", function (ev) {
      ev.preventDefault();
      var first = document.querySelector("#view td button[tabindex='0']") || document.querySelector("#view td button") || $("main");
      first.focus();
      first.scrollIntoView({ block: "nearest" });
    });
    $("f-toggle").addEventListener("click", function () {  // a phone shows the filters on demand
      var open = $("filters").classList.toggle("open");
      $("f-toggle").setAttribute("aria-expanded", open ? "true" : "false");
    });
    var follow = function () {  // the user edited the hash, or went back or forward
      var h = location.hash.replace(/^#/, "");
      if (h === hashOf(state) || (h && h.indexOf("=") < 0)) return;  // a plain anchor is no state
      readHash();
      render();
    };
    window.addEventListener("hashchange", follow);
    window.addEventListener("popstate", follow);
    readHash();
    render();
  }
  init();
})();
