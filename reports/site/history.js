/* The History view of the offline site, and a cell's history across publications.
 *
 * Data: data/history.js (window.COMPAT_DATA.history, written by runner/history.py), loaded as a
 * <script> when first needed (no fetch: the site works from file://). Each publication lists the
 * cells whose outcome or category changed against the one before ("flips", by kind, as
 * CHANGES.md), the cells new in it (grouped: {"scenario:format:variant": {saver: [loader]}})
 * and the cells gone. A cell's history is rebuilt from those: its state in each publication, said
 * as runs ("ok since A, load_error [category] since B"), the way runner.history.describe says it.
 * app.js hands over a few of its functions (HOOK: el, openCell, findCell, current). Record text is
 * only ever set as textContent.
 */
(function () {
  "use strict";
  var D = (window.COMPAT_DATA = window.COMPAT_DATA || {});
  var FILE = "data/history.js";
  var pending = null;
  var flipIx = {};  // publication index -> {cell id: flip row}
  var CELL = /^([^:]+):(.+):([^:>]+)->([^:]+):([^:]+)$/;
  var SHOWN = 300;  // cells listed per kind in the feed before "… and N more"

  function data() {
    if (D.history) return Promise.resolve(D.history);
    if (!pending) {
      pending = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = FILE;
        s.onload = function () { if (D.history) resolve(D.history); else reject(new Error(FILE + " defines no history")); };
        s.onerror = function () { pending = null; reject(new Error("cannot load " + FILE)); };
        document.head.appendChild(s);
      });
    }
    return pending;
  }
  function stateText(s) { return s[0] + (s[1] ? " [" + s[1] + "]" : ""); }
  function flipsOf(H, k) {
    if (!flipIx[k]) {
      var m = {};
      H.publications[k].flips.forEach(function (f) { m[f[0]] = f; });
      flipIx[k] = m;
    }
    return flipIx[k];
  }
  function isNew(P, id) {
    var p = CELL.exec(id);
    if (!p) return P.newOther.indexOf(id) >= 0;
    var g = P["new"][p[1] + ":" + p[2] + ":" + p[5]];
    return !!(g && g[p[3]] && g[p[3]].indexOf(p[4]) >= 0);
  }
  // What happened to one cell in each publication: null, or {t: "flip"|"new"|"gone", old, now}.
  function events(H, id) {
    return H.publications.map(function (P, k) {
      var f = flipsOf(H, k)[id];
      if (f) return { t: "flip", old: [f[2], f[3]], now: [f[4], f[5]] };
      if (isNew(P, id)) return { t: "new" };
      for (var i = 0; i < P.gone.length; i++) if (P.gone[i][0] === id) return { t: "gone", old: [P.gone[i][1], P.gone[i][2]] };
      return null;
    });
  }
  // [[publication id, [outcome, category] or null (not in it)], ...]: the cell's state in every
  // publication, oldest first; cur: its state in the table now (null: not in it).
  function steps(H, id, cur) {
    var ev = events(H, id), out = [], n = ev.length, present, state = null, k;
    var first = null;
    for (k = 1; k < n; k++) if (ev[k]) { first = ev[k]; break; }
    present = first ? first.t !== "new" : cur !== null;
    function until(from) {  // the state from publication ``from`` to the next event
      for (var j = from + 1; j < n; j++) {
        if (ev[j] && (ev[j].t === "flip" || ev[j].t === "gone")) return ev[j].old;
      }
      return cur;
    }
    for (k = 0; k < n; k++) {
      var e = k > 0 ? ev[k] : null;
      if (e && e.t === "flip") { present = true; state = e.now; }
      else if (e && e.t === "new") { present = true; state = until(k); }
      else if (e && e.t === "gone") present = false;
      else if (k === 0 && present) state = until(0);
      out.push([H.publications[k].id, present ? state : null]);
    }
    return out;
  }
  function describe(list) {  // as runner.history.describe
    var runs = [], last;
    list.forEach(function (st) {
      var s = st[1], key = s ? s[0] + "\u0000" + s[1] : null;
      if ((runs.length && key === last) || (s === null && !runs.length)) return;
      last = key;
      runs.push(s === null ? "absent since " + st[0] : stateText(s) + " since " + st[0]);
    });
    return runs.join(", ");
  }
  function uncompared(H) {
    return H.publications.filter(function (P, k) { return k > 0 && !P.compared; }).map(function (P) { return P.id; });
  }
  function historyText(H, id, cur) {
    var list = steps(H, id, cur);
    var text = describe(list) || "not in any publication";
    var gaps = uncompared(H);
    if (gaps.length) text += " (not compared with the publication before: " + gaps.join(", ") + "; a change there is not shown)";
    return text;
  }

  // ------------------------------------------------------------- a cell's panel
  function cellPanel(c, hook) {
    var el = hook.el;
    var dd = el("dd", { id: "d-history", text: "loading…" });
    var box = el("dl", { cls: "history" }, el("dt", { text: "history across publications" }), dd);
    data().then(function (H) {
      if (H.problem) { dd.textContent = "the history cannot be read: " + H.problem; return; }
      if (!H.publications.length) { dd.textContent = "no history yet: it starts when a table is published over this one"; return; }
      dd.textContent = historyText(H, c.id, [c.outcome.id, c.category || ""]);
    }, function (e) { dd.textContent = e.message; });
    return box;
  }

  // ------------------------------------------------------------- the History view
  function cellLink(hook, id, rest) {
    var el = hook.el;
    return el("li", null, el("button", { type: "button", cls: "link", "data-cell": id, text: id,
      onclick: function () { hook.openCell(id); } }), rest ? " " + rest : "");
  }
  function feed(H, P, hook) {
    var el = hook.el, box = el("div", { cls: "feed", "data-publication": P.id });
    if (!P.compared) {
      box.appendChild(el("p", { cls: "note", text: P.adopted ? "The table this folder held before its history was kept (adopted when the next table was published); nothing earlier to compare with."
        : "Not compared with the publication before (that table could not be read)." }));
      return box;
    }
    var kinds = {};
    P.flips.forEach(function (f) { (kinds[f[1]] = kinds[f[1]] || []).push(f); });
    var any = false;
    H.kinds.forEach(function (kind, i) {
      var rows = kinds[i];
      if (!rows) return;
      var first = !any;  // the first kind with cells is open
      any = true;
      var ul = el("ul", { cls: "cells" });
      rows.slice(0, SHOWN).forEach(function (f) { ul.appendChild(cellLink(hook, f[0], stateText([f[2], f[3]]) + " → " + stateText([f[4], f[5]]))); });
      if (rows.length > SHOWN) ul.appendChild(el("li", { text: "… and " + (rows.length - SHOWN) + " more (history/" + P.id + ".changes.json.gz lists them all)" }));
      box.appendChild(el("details", { open: first ? "open" : null, "data-kind": kind }, el("summary", { text: kind + " (" + rows.length + ")" }), ul));
    });
    var nNew = P.counts["new cells"] || 0, gone = P.gone;
    if (nNew) box.appendChild(el("p", { cls: "note", text: nNew + " new cells (not in the publication before)." }));
    if (gone.length) {
      var ul = el("ul", { cls: "cells" });
      gone.slice(0, SHOWN).forEach(function (g) { ul.appendChild(el("li", { text: g[0] + " (was " + stateText([g[1], g[2]]) + ")" })); });
      if (gone.length > SHOWN) ul.appendChild(el("li", { text: "… and " + (gone.length - SHOWN) + " more" }));
      box.appendChild(el("details", null, el("summary", { text: "cells gone (" + gone.length + ")" }), ul));
    }
    if (!any && !nNew && !gone.length) box.appendChild(el("p", { text: "No cell changed." }));
    return box;
  }
  function lookup(H, hook, out, id) {
    out.textContent = "";
    id = (id || "").trim();
    if (!id) return;
    out.textContent = "looking up…";
    return Promise.resolve(hook.findCell ? hook.findCell(id) : null).then(function (c) {
      out.textContent = id + ": " + historyText(H, id, c ? [c.outcome.id, c.category || ""] : null);
    }, function (e) { out.textContent = e.message; });
  }
  function view(root, hook, token) {
    var el = hook.el;
    return data().then(function (H) {
      if (!hook.current(token)) return;
      root.appendChild(el("h2", { text: "History of the published tables" }));
      if (H.problem) { root.appendChild(el("p", { id: "history-problem", text: "The history in history/ cannot be read, so nothing is added to it: " + H.problem })); return; }
      if (!H.publications.length) {
        root.appendChild(el("p", { id: "history-empty", text: "No history yet: it starts when a table is published over this one (history/ then holds both)." }));
        return;
      }
      root.appendChild(el("p", { cls: "note", text: H.publications.length + " publications, newest first. Each lists the cells whose outcome " +
        "or failure category changed against the publication before (the regression gate's comparison, as CHANGES.md). " +
        "Select a cell for its details and its history; or type a cell id:" }));
      var out = el("p", { id: "history-cell", role: "status" });
      var input = el("input", { id: "history-q", type: "search", size: "48", "aria-label": "cell id", placeholder: "scenario:format:saver->loader:variant" });
      root.appendChild(el("form", { id: "history-form", onsubmit: function (ev) { ev.preventDefault(); lookup(H, hook, out, input.value); } },
        input, " ", el("button", { type: "submit", text: "Show its history" })));
      root.appendChild(out);
      var list = el("ul", { id: "history-feed", style: "list-style:none;padding-left:0" });  // the ids hold the numbers
      H.publications.slice().reverse().forEach(function (P, r) {
        var c = P.counts, flips = P.flips.length;
        var head = P.id + (P.date ? " (" + P.date + ")" : " (undated: the table before the history began)") + " — " +
          (P.cells === null || P.cells === undefined ? "" : P.cells + " cells; ") +
          (P.compared ? flips + " changed, " + (c["new cells"] || 0) + " new, " + (c["cells gone"] || 0) + " gone" : "not compared");
        var sel = P.selection.indexOf(": stacks ") > 0 ? P.selection.slice(0, P.selection.indexOf(": stacks ")) : P.selection;
        list.appendChild(el("li", { "data-publication": P.id }, el("details", { open: r === 0 ? "open" : null },
          el("summary", { text: head }), el("p", { cls: "note", text: sel }), feed(H, P, hook))));
      });
      root.appendChild(list);
      root.appendChild(el("p", { cls: "note" }, "The snapshots (each publication's results.json.gz) and the index are in ",
        el("a", { href: "history/index.json", text: "history/" }), "; the latest comparison is also ", el("a", { href: "CHANGES.md", text: "CHANGES.md" }), "."));
    });
  }
  window.COMPAT_HISTORY = { view: view, cellPanel: cellPanel, describe: describe, steps: steps, data: data };
})();
