/* qcline review page: keyboard-first review of flagged units. Vanilla JS, no build step, no framework.
 *
 * Every piece of server text reaches the DOM through textContent or setAttribute, never innerHTML.
 * The JSON API is called same-origin; the HttpOnly session cookie authenticates it.
 */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var CLASS_NAME = /^[A-Za-z0-9 _.\-]{1,64}$/;
  var DECISION_LABEL = { confirm: "defect confirmed", false_alarm: "false alarm", correct: "boxes saved" };
  var DISPOSITION_LABEL = { release: "Release", rework: "Rework", scrap: "Scrap" };
  var DISPOSITION_DONE = { release: "released", rework: "sent to rework", scrap: "scrapped" };

  function typing(event) {
    var t = event.target;
    if (!t || t === document.body) return false;
    return t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName);
  }

  /* Times in the page's zone: QC_TIMEZONE (data-tz on #page-zone) or, unset, the browser's local zone, always
     with the zone named: "2026-11-26 09:24:52 CET". Falls back to the stored UTC text if Intl cannot help. */
  var zoneHolder = document.getElementById("page-zone");
  var pageZone = (zoneHolder && zoneHolder.getAttribute("data-tz")) || undefined;
  var formatter = null;
  try {
    formatter = new Intl.DateTimeFormat("en-GB", { timeZone: pageZone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" });
  } catch (e) { formatter = null; }
  function zoneLabel() {
    var name = pageZone || (formatter ? formatter.resolvedOptions().timeZone : "UTC");
    return name;
  }
  function when(iso) {
    var text = String(iso || "");
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(text)) return text;
    var moment = new Date(text);
    if (!formatter || isNaN(moment.getTime())) return text.slice(0, 19).replace("T", " ") + " UTC";
    var parts = {};
    formatter.formatToParts(moment).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute + ":" + parts.second +
      " " + (parts.timeZoneName || "");
  }
  function localiseTimes(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll("time[datetime]"), function (t) {
      var iso = t.getAttribute("datetime");
      if (iso) { t.textContent = when(iso); t.title = iso; }
    });
    var label = document.getElementById("zone-name");
    if (label) label.textContent = zoneLabel();
  }
  localiseTimes(document);

  function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }
  function round1(v) { return Math.round(v * 10) / 10; }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  /* POST JSON; resolves to {ok, status, body} whatever happens (network errors included). */
  function postJSON(url, payload) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRF-Token": (document.querySelector('meta[name="csrf-token"]') || {}).content || "" },
      body: JSON.stringify(payload)
    }).then(function (res) {
      return res.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        return { ok: res.ok, status: res.status, statusText: res.statusText, body: body };
      });
    }, function (err) {
      return { ok: false, status: 0, statusText: "network error: " + err, body: null };
    });
  }

  function failure(res) {
    var detail = res.body && typeof res.body.detail === "string" ? res.body.detail : "";
    var text = detail || (res.status ? "HTTP " + res.status + " " + res.statusText : res.statusText);
    if (res.status === 401) text += " (sign in again)";
    return text;
  }

  function setStatus(node, text, kind) {
    if (!node) return;
    node.textContent = text;
    node.className = node.className.replace(/\bis-\w+\b/g, "").trim() + (kind ? " is-" + kind : "");
    if (kind === "error" && /sign in again/.test(text)) {
      node.appendChild(document.createTextNode(" "));
      var a = el("a", "", "Sign in");
      a.href = "/review/login";
      node.appendChild(a);
    }
  }

  /* ---- help panel (both pages) ----------------------------------------------------------------------- */

  var help = document.getElementById("help");
  var helpToggle = document.querySelector(".help-toggle");
  function toggleHelp(show) {
    if (!help) return;
    var visible = show === undefined ? help.hidden : show;
    help.hidden = !visible;
    if (helpToggle) helpToggle.setAttribute("aria-expanded", visible ? "true" : "false");
  }
  if (helpToggle) helpToggle.addEventListener("click", function () { toggleHelp(); });

  /* ---- the queue --------------------------------------------------------------------------------------- */

  function initQueue() {
    var rows = Array.prototype.slice.call(document.querySelectorAll(".queue-row"));
    var current = 0;

    function select(i) {
      if (!rows.length) return;
      current = clamp(i, 0, rows.length - 1);
      rows.forEach(function (row, n) {
        row.setAttribute("aria-selected", n === current ? "true" : "false");
        row.classList.toggle("selected", n === current);
      });
      rows[current].scrollIntoView({ block: "nearest" });
    }

    function open() {
      if (rows.length) window.location.href = rows[current].getAttribute("data-href");
    }

    rows.forEach(function (row, n) {
      row.addEventListener("click", function () { select(n); });
      row.addEventListener("dblclick", open);
    });
    select(0);
    var filters = document.getElementById("filters");
    if (filters) {
      Array.prototype.forEach.call(filters.querySelectorAll("select, input[type='date']"), function (field) {
        field.addEventListener("change", function () { filters.submit(); });
      });
    }

    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
      var onControl = e.target && /^(A|BUTTON)$/.test(e.target.tagName);
      switch (e.key) {
        case "j": case "ArrowDown": select(current + 1); break;
        case "k": case "ArrowUp": select(current - 1); break;
        case "Enter": if (onControl) return; open(); break;
        case "o": open(); break;
        case ".": window.location.reload(); break;
        case "/": { var q = document.getElementById("filter-q"); if (q) { q.focus(); q.select(); } break; }
        case "?": toggleHelp(); break;
        case "Escape": toggleHelp(false); break;
        default: return;
      }
      e.preventDefault();
    });
    document.body.setAttribute("data-ready", "1");
  }

  /* ---- one unit ---------------------------------------------------------------------------------------- */

  function initUnit() {
    var data = JSON.parse(document.getElementById("unit-data").textContent);
    var classes = data.classes.slice();
    var unitStatus = document.getElementById("unit-status");
    var confirmBox = document.getElementById("confirm");
    var confirmText = document.getElementById("confirm-text");
    var pendingDisposition = null;
    var disposing = false;
    var drag = null;

    var frames = Array.prototype.slice.call(document.querySelectorAll("article.frame")).map(function (article, i) {
      var fd = data.frames[i];
      var fr = {
        index: i, data: fd, el: article,
        img: article.querySelector("img.frame-image"),
        svg: article.querySelector("svg.overlay"),
        select: article.querySelector(".class-select"),
        newClass: article.querySelector(".new-class-name"),
        note: article.querySelector(".note"),
        status: article.querySelector(".frame-status"),
        history: article.querySelector(".history"),
        count: article.querySelector(".box-count"),
        badge: article.querySelector(".reviewed-badge"),
        boxes: initialBoxes(fd), selected: -1, busy: false, w: 0, h: 0
      };
      return fr;
    });
    var current = 0;

    function initialBoxes(fd) {
      var reviews = fd.reviews || [];
      var latest = reviews.length ? reviews[reviews.length - 1] : null;
      if (latest && latest.decision === "correct") {
        return latest.boxes.map(function (b) {
          return { cls: String(b[0]), x1: +b[1], y1: +b[2], x2: +b[3], y2: +b[4], conf: null, kind: "reviewed" };
        });
      }
      var unitKind = String(data.verdict || "").toLowerCase();
      var unitClasses = data.unit_level_classes || [];
      return (fd.findings || []).map(function (f) {
        var kind = String(f.outcome || "").toLowerCase();
        var frameKind = String(fd.verdict || "").toLowerCase();
        // a finding marked PASS that a count rule still counted is what failed its frame (or, in a unit-level
        // reason, the unit): it is drawn in that verdict's colour, not as a passing box
        if (kind === "pass" && (fd.reason_classes || []).indexOf(f["class"]) >= 0 &&
            (frameKind === "fail" || frameKind === "review")) {
          kind = frameKind;
        } else if (kind === "pass" && unitClasses.indexOf(f["class"]) >= 0 &&
                   (unitKind === "fail" || unitKind === "review")) {
          kind = unitKind;
        }
        return { cls: f["class"], x1: f.box[0], y1: f.box[1], x2: f.box[2], y2: f.box[3], conf: f.confidence,
                 kind: kind };
      });
    }

    /* Frames a person should look at: the flagged ones, or every frame when the unit fails on a unit-level
       count while each frame passes alone. */
    var unitLevel = frames.length > 0 && (data.verdict === "FAIL" || data.verdict === "REVIEW") &&
      frames.every(function (fr) { return fr.data.verdict === "PASS"; });
    function needsReview(fr) { return unitLevel || fr.data.verdict !== "PASS"; }
    function unreviewed() {
      return frames.filter(function (fr) { return needsReview(fr) && !(fr.data.reviews || []).length; });
    }
    function firstToReview() {
      var left = unreviewed();
      return left.length ? left[0].index : 0;
    }
    current = firstToReview();
    var strip = Array.prototype.slice.call(document.querySelectorAll(".strip-item"));
    var progress = document.getElementById("review-progress");
    function showProgress() {
      var due = frames.filter(needsReview).length;
      var done = due - unreviewed().length;
      if (progress) progress.textContent = done + " of " + due + " frame" + (due === 1 ? "" : "s") + " to review reviewed";
      strip.forEach(function (a, n) {
        var st = a.querySelector(".strip-state");
        if (st && frames[n]) st.textContent = (frames[n].data.reviews || []).length ? "✓" : (needsReview(frames[n]) ? "•" : "");
      });
    }

    function setCurrent(i, scroll) {
      if (!frames.length) return;
      current = clamp(i, 0, frames.length - 1);
      frames.forEach(function (fr, n) {
        fr.el.classList.toggle("current", n === current);
        fr.el.setAttribute("aria-current", n === current ? "true" : "false");
      });
      strip.forEach(function (a, n) { a.classList.toggle("current", n === current); });
      if (scroll) scrollToFrame(frames[current]);
    }

    function headHeight() {
      var head = document.getElementById("unit-head");
      return head ? head.getBoundingClientRect().height : 0;
    }
    /* the frame just below the sticky unit head, so its header (and decision buttons) and image are on screen */
    function scrollToFrame(fr) {
      var top = fr.el.getBoundingClientRect().top + window.pageYOffset - headHeight() - 6;
      window.scrollTo(0, Math.max(0, top));
    }

    /* -- classes -- */

    function optionFor(name) {
      var opt = document.createElement("option");
      opt.value = name;
      opt.textContent = (classes.indexOf(name) + 1) + " · " + name;
      return opt;
    }

    function ensureClass(name) {
      if (classes.indexOf(name) >= 0) return;
      classes.push(name);
      frames.forEach(function (fr) { if (fr.select) fr.select.appendChild(optionFor(name)); });
    }

    function setClass(fr, name) {
      ensureClass(name);
      if (fr.select) fr.select.value = name;
      if (fr.selected >= 0) {
        var box = fr.boxes[fr.selected];
        if (box.cls !== name) { box.cls = name; box.conf = null; box.kind = "edited"; }
        render(fr);
      }
    }

    function addClass(fr) {
      var name = fr.newClass.value.trim();
      if (!CLASS_NAME.test(name)) {
        setStatus(fr.status, "A class name is 1-64 letters, digits, spaces, '_', '.' or '-'.", "error");
        return;
      }
      setClass(fr, name);
      fr.newClass.value = "";
      setStatus(fr.status, "Class '" + name + "' added" + (fr.selected >= 0 ? " and set on the selected box." : "."), "info");
    }

    function currentClass(fr) {
      if (fr.select && fr.select.value) return fr.select.value;
      return classes.length ? classes[0] : "defect";
    }

    /* -- geometry and drawing -- */

    function layout(fr) {
      if (!fr.img || !fr.w) return;
      var stage = fr.img.closest(".stage");
      var availW = Math.max(200, stage.clientWidth);
      var frameHead = fr.el.querySelector(".frame-head");
      var chrome = headHeight() + (frameHead ? frameHead.getBoundingClientRect().height : 40) + 36;
      var availH = Math.max(200, window.innerHeight - chrome);
      var scale = Math.min(availW / fr.w, availH / fr.h, 8);
      fr.img.style.width = Math.round(fr.w * scale) + "px";
      fr.img.style.height = Math.round(fr.h * scale) + "px";
    }

    /* image pixels per screen pixel */
    function unitsPerPx(fr) {
      var shown = fr.img.getBoundingClientRect().width;
      return shown ? fr.w / shown : 1;
    }

    function toImage(fr, ev) {
      var rect = fr.svg.getBoundingClientRect();
      var x = (ev.clientX - rect.left) * fr.w / rect.width;
      var y = (ev.clientY - rect.top) * fr.h / rect.height;
      return { x: clamp(x, 0, fr.w), y: clamp(y, 0, fr.h) };
    }

    function render(fr) {
      if (!fr.svg || !fr.w) return;
      var svg = fr.svg;
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      var k = unitsPerPx(fr);
      svg.appendChild(svgEl("rect", { "class": "bg", x: 0, y: 0, width: fr.w, height: fr.h }));
      var placed = [], labels = [];
      fr.boxes.forEach(function (b, i) {
        var g = svgEl("g", { "class": "box kind-" + (b.kind || "edited") + (i === fr.selected ? " selected" : ""),
                             "data-index": i, "data-class": b.cls });
        g.appendChild(svgEl("rect", { "class": "frame-box", x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1 }));
        var text = b.cls + (b.conf !== null && b.conf !== undefined ? " " + Number(b.conf).toFixed(2) : "");
        var spot = labelSpot(fr, b, text, k, placed);
        placed.push(spot);
        // labels go on a layer above every box, so no later box's outline runs through an earlier label
        var tag = svgEl("g", { "class": "box-label kind-" + (b.kind || "edited"), "data-index": i });
        if (spot.leader) {
          tag.appendChild(svgEl("line", { "class": "leader", x1: spot.leader[0], y1: spot.leader[1], x2: spot.leader[2],
                                          y2: spot.leader[3] }));
        }
        tag.appendChild(svgEl("rect", { "class": "tag", x: spot.x, y: spot.y, width: spot.w, height: spot.h, rx: 2 * k }));
        var label = svgEl("text", { "class": "label", x: spot.x + 3 * k, y: spot.y + spot.h - 4 * k, "font-size": 12 * k });
        label.textContent = text;
        tag.appendChild(label);
        labels.push(tag);
        if (i === fr.selected) {
          var s = 10 * k;
          g.appendChild(svgEl("rect", { "class": "handle", "data-handle": "resize", x: b.x2 - s / 2, y: b.y2 - s / 2,
                                        width: s, height: s }));
        }
        svg.appendChild(g);
      });
      labels.forEach(function (tag) { svg.appendChild(tag); });
      if (drag && drag.fr === fr && drag.mode === "draw" && drag.rect) {
        var r = drag.rect;
        svg.appendChild(svgEl("rect", { "class": "drawing", x: r.x1, y: r.y1, width: r.x2 - r.x1, height: r.y2 - r.y1 }));
      }
      if (fr.count) {
        fr.count.textContent = fr.boxes.length + " box" + (fr.boxes.length === 1 ? "" : "es") +
          (fr.selected >= 0 ? " · selected: " + fr.boxes[fr.selected].cls : "");
      }
    }

    /* A label tag that overlaps no tag placed before it: above the box, inside its top, below it, then further
       down in steps, inside the image; a tag moved away from its box gets a leader line to it. */
    function labelSpot(fr, b, text, k, placed) {
      var h = 16 * k, w = (text.length * 7.2 + 8) * k;
      var x = clamp(b.x1, 0, Math.max(0, fr.w - w));
      var tries = [b.y1 - h - 1 * k, b.y1 + 1 * k, b.y2 + 1 * k];
      for (var step = 1; step < 40; step++) tries.push(b.y2 + 1 * k + step * (h + 2 * k), b.y1 - h - step * (h + 2 * k));
      function hits(y) {
        if (y < 0 || y + h > fr.h) return true;
        return placed.some(function (p) { return x < p.x + p.w && x + w > p.x && y < p.y + p.h && y + h > p.y; });
      }
      for (var t = 0; t < tries.length; t++) {
        var y = tries[t];
        if (!hits(y)) {
          var far = y > b.y2 + 2 * k || y + h < b.y1 - 2 * k;
          return { x: x, y: y, w: w, h: h,
                   leader: far ? [x + 4 * k, y > b.y2 ? y : y + h, x + 4 * k, y > b.y2 ? b.y2 : b.y1] : null };
        }
      }
      // nowhere free in this column: shift right of every placed tag
      var right = placed.reduce(function (m, p) { return Math.max(m, p.x + p.w + 2 * k); }, 0);
      return { x: Math.min(right, Math.max(0, fr.w - w)), y: clamp(b.y1, 0, Math.max(0, fr.h - h)), w: w, h: h, leader: null };
    }

    function selectBox(fr, i) {
      fr.selected = i;
      if (i >= 0 && fr.select) {
        ensureClass(fr.boxes[i].cls);
        fr.select.value = fr.boxes[i].cls;
      }
      render(fr);
    }

    function deleteSelected(fr) {
      if (fr.selected < 0) {
        setStatus(fr.status, "Select a box first (click it).", "info");
        return;
      }
      var gone = fr.boxes.splice(fr.selected, 1)[0];
      fr.selected = -1;
      render(fr);
      setStatus(fr.status, "Box '" + gone.cls + "' deleted (press s to save the boxes).", "info");
    }

    function startDrag(fr, ev) {
      if (ev.button !== 0 || !fr.w) return;
      ev.preventDefault();  // no native image drag or text selection; so also blur a field typed in before
      if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
      setCurrent(fr.index, false);
      var p = toImage(fr, ev);
      var g = ev.target.closest ? ev.target.closest("g.box") : null;
      if (g) {
        var i = Number(g.getAttribute("data-index"));
        var b = fr.boxes[i];
        var mode = ev.target.getAttribute("data-handle") === "resize" ? "resize" : "move";
        selectBox(fr, i);
        drag = { fr: fr, mode: mode, index: i, start: p, orig: { x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2 }, moved: false };
      } else {
        fr.selected = -1;
        drag = { fr: fr, mode: "draw", start: p, rect: null };
        render(fr);
      }
    }

    function moveDrag(ev) {
      if (!drag) return;
      var fr = drag.fr;
      var p = toImage(fr, ev);
      var dx = p.x - drag.start.x, dy = p.y - drag.start.y;
      if (drag.mode === "draw") {
        drag.rect = { x1: Math.min(drag.start.x, p.x), y1: Math.min(drag.start.y, p.y),
                      x2: Math.max(drag.start.x, p.x), y2: Math.max(drag.start.y, p.y) };
      } else {
        var o = drag.orig, b = fr.boxes[drag.index];
        if (drag.mode === "move") {
          var bw = o.x2 - o.x1, bh = o.y2 - o.y1;
          b.x1 = clamp(o.x1 + dx, 0, fr.w - bw); b.y1 = clamp(o.y1 + dy, 0, fr.h - bh);
          b.x2 = b.x1 + bw; b.y2 = b.y1 + bh;
        } else {
          var min = Math.max(1, 4 * unitsPerPx(fr));
          b.x2 = clamp(o.x2 + dx, o.x1 + min, fr.w); b.y2 = clamp(o.y2 + dy, o.y1 + min, fr.h);
        }
        if (dx || dy) { drag.moved = true; if (b.kind !== "reviewed") b.kind = "edited"; }
      }
      render(fr);
    }

    function endDrag(ev) {
      if (!drag) return;
      moveDrag(ev);
      var d = drag, fr = d.fr;
      drag = null;
      if (d.mode === "draw") {
        var min = Math.max(1, 4 * unitsPerPx(fr));
        var r = d.rect;
        if (r && r.x2 - r.x1 >= min && r.y2 - r.y1 >= min) {
          fr.boxes.push({ cls: currentClass(fr), x1: r.x1, y1: r.y1, x2: r.x2, y2: r.y2, conf: null, kind: "edited" });
          selectBox(fr, fr.boxes.length - 1);
          setStatus(fr.status, "New box drawn: pick its class (1-9 or the list), then press s to save.", "info");
          return;
        }
      } else if (d.moved) {
        setStatus(fr.status, "Box moved (press s to save the boxes).", "info");
      }
      render(fr);
    }

    /* -- decisions -- */

    function historyItem(review) {
      var text = review.decision + " by " + review.actor + " at " + when(review.created_at);
      if (review.decision === "correct") {
        text += " (" + review.boxes.length + " box" + (review.boxes.length === 1 ? "" : "es") + ")";
      }
      if (review.note) text += ": " + review.note;
      return el("li", "", text);
    }

    function decide(fr, decision) {
      setCurrent(fr.index, false);
      if (fr.busy) {
        setStatus(fr.status, "Still saving the previous decision…", "pending");
        return;
      }
      var payload = { inspection_id: fr.data.id, decision: decision, note: fr.note ? fr.note.value.trim() : "" };
      if (decision === "correct") {
        payload.boxes = fr.boxes.map(function (b) {
          return [b.cls, round1(b.x1), round1(b.y1), round1(b.x2), round1(b.y2)];
        });
      }
      fr.busy = true;
      fr.el.classList.add("busy");
      setStatus(fr.status, "Saving: " + DECISION_LABEL[decision] + "…", "pending");
      postJSON("/v1/reviews", payload).then(function (res) {
        fr.busy = false;
        fr.el.classList.remove("busy");
        if (!res.ok || !res.body) {
          setStatus(fr.status, "Not saved: " + failure(res), "error");
          return;
        }
        var review = res.body;
        var what = DECISION_LABEL[decision] + (decision === "correct" ? " (" + review.boxes.length + ")" : "");
        if (review.duplicate) {
          setStatus(fr.status, "Already recorded: " + what + " (review #" + review.id + " by " + review.actor + ").", "ok");
          return;
        }
        setStatus(fr.status, "Saved: " + what + " (review #" + review.id + ").", "ok");
        fr.data.reviews = (fr.data.reviews || []).concat([review]);
        var none = fr.history.querySelector(".none");
        if (none) none.remove();
        fr.history.appendChild(historyItem(review));
        if (fr.badge) fr.badge.hidden = false;
        showProgress();
        if (decision === "correct") {
          fr.boxes.forEach(function (b) { b.kind = "reviewed"; });
          render(fr);
        }
      });
    }

    /* -- dispositions -- */

    var confirmWarning = document.getElementById("confirm-warning");
    var confirmGoto = document.getElementById("confirm-goto");
    function askDisposition(kind) {
      if (disposing) return;
      pendingDisposition = kind;
      confirmText.textContent = DISPOSITION_LABEL[kind] + " unit " + data.unit_id + "? It leaves the review queue.";
      var left = unreviewed();
      if (left.length) {
        confirmWarning.textContent = left.length + " of " + frames.filter(needsReview).length + " frame" +
          (frames.filter(needsReview).length === 1 ? "" : "s") + " to review " + (left.length === 1 ? "was" : "were") +
          " not reviewed: " + left.map(function (fr) { return "frame " + (fr.index + 1) + " (" + fr.data.camera_id + ")"; })
            .join(", ") + ". " + DISPOSITION_LABEL[kind] + " anyway?";
        confirmWarning.hidden = false;
        confirmGoto.hidden = false;
        confirmBox.classList.add("warning");
      } else {
        confirmWarning.hidden = true;
        confirmGoto.hidden = true;
        confirmBox.classList.remove("warning");
      }
      confirmBox.hidden = false;
      confirmBox.setAttribute("data-disposition", kind);
      document.getElementById("confirm-yes").focus();
    }

    function gotoUnreviewed() {
      var left = unreviewed();
      closeConfirm();
      if (left.length) setCurrent(left[0].index, true);
    }

    function closeConfirm() {
      pendingDisposition = null;
      confirmBox.hidden = true;
      confirmBox.removeAttribute("data-disposition");
      if (document.activeElement && confirmBox.contains(document.activeElement)) document.activeElement.blur();
    }

    function dispose() {
      var kind = pendingDisposition;
      if (!kind || disposing) return;
      closeConfirm();
      disposing = true;
      setStatus(unitStatus, DISPOSITION_LABEL[kind] + ": saving…", "pending");
      postJSON(data.disposition_url, { disposition: kind, note: "" }).then(function (res) {
        disposing = false;
        if (!res.ok || !res.body) {
          setStatus(unitStatus, "Disposition not saved: " + failure(res), "error");
          return;
        }
        var d = res.body;
        setStatus(unitStatus, "Unit " + data.unit_id + " " + DISPOSITION_DONE[kind] + " by " + d.actor +
                  ". Press u for the queue.", "ok");
        document.getElementById("dispositions").appendChild(el("li", "", d.disposition + " by " + d.actor + " at " + when(d.at)));
        layoutAll();
        document.body.classList.add("disposed");
      });
    }

    /* -- wiring -- */

    frames.forEach(function (fr) {
      fr.el.addEventListener("mousedown", function () { setCurrent(fr.index, false); });
      fr.el.addEventListener("focusin", function () { setCurrent(fr.index, false); });
      fr.el.querySelectorAll("button.decide").forEach(function (btn) {
        btn.addEventListener("click", function () { decide(fr, btn.getAttribute("data-decision")); });
      });
      fr.el.querySelector("button.delete-box").addEventListener("click", function () { deleteSelected(fr); });
      fr.el.querySelector("button.add-class").addEventListener("click", function () { addClass(fr); });
      fr.newClass.addEventListener("keydown", function (e) {
        if (e.key === "Enter") { e.preventDefault(); addClass(fr); fr.newClass.blur(); }
      });
      if (fr.select) {
        fr.select.addEventListener("change", function () {
          setClass(fr, fr.select.value);
          fr.select.blur();  // hand the keyboard back to the shortcuts
        });
      }
      if (!fr.img) {
        fr.el.setAttribute("data-loaded", "none");
        return;
      }
      fr.svg.setAttribute("preserveAspectRatio", "none");
      fr.svg.addEventListener("mousedown", function (e) { startDrag(fr, e); });
      var ready = function () {
        fr.w = fr.img.naturalWidth;
        fr.h = fr.img.naturalHeight;
        fr.svg.setAttribute("viewBox", "0 0 " + fr.w + " " + fr.h);
        fr.svg.setAttribute("data-width", fr.w);
        fr.svg.setAttribute("data-height", fr.h);
        layout(fr);
        render(fr);
        fr.el.setAttribute("data-loaded", "1");
      };
      if (fr.img.complete && fr.img.naturalWidth) ready();
      else {
        fr.img.addEventListener("load", ready);
        fr.img.addEventListener("error", function () {
          fr.el.setAttribute("data-loaded", "error");
          setStatus(fr.status, "The frame image did not load (is the session still valid?).", "error");
        });
      }
    });
    window.addEventListener("mousemove", moveDrag);
    window.addEventListener("mouseup", endDrag);
    function layoutAll() { frames.forEach(function (fr) { layout(fr); render(fr); }); }
    window.addEventListener("resize", layoutAll);

    document.querySelectorAll(".dispose-btn").forEach(function (btn) {
      btn.addEventListener("click", function () { askDisposition(btn.getAttribute("data-disposition")); });
    });
    document.getElementById("confirm-yes").addEventListener("click", dispose);
    document.getElementById("confirm-no").addEventListener("click", closeConfirm);
    confirmGoto.addEventListener("click", gotoUnreviewed);
    strip.forEach(function (a, n) {
      a.addEventListener("click", function (e) { e.preventDefault(); setCurrent(n, true); });
    });

    document.addEventListener("keydown", function (e) {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (typing(e)) {
        if (e.key === "Escape") e.target.blur();
        return;
      }
      if (pendingDisposition) {  // the in-page confirm step takes the keyboard until answered
        if (e.key === "Enter" || e.key === "y") dispose();
        else if (e.key === "Escape" || e.key === "n") closeConfirm();
        else if (e.key === "g" && !confirmGoto.hidden) gotoUnreviewed();
        else return;
        e.preventDefault();
        return;
      }
      var fr = frames[current];
      if (e.key === "Enter" || e.key === " ") return;  // leave buttons and links their own keys
      var digit = /^[1-9]$/.test(e.key) ? Number(e.key) : 0;
      if (digit) {
        if (!fr) return;
        if (digit > classes.length) setStatus(fr.status, "There is no class " + digit + ".", "error");
        else setClass(fr, classes[digit - 1]);
        e.preventDefault();
        return;
      }
      switch (e.key) {
        case "c": if (fr) decide(fr, "confirm"); break;
        case "f": if (fr) decide(fr, "false_alarm"); break;
        case "s": if (fr) decide(fr, "correct"); break;
        case "n": setCurrent(current + 1, true); break;
        case "p": setCurrent(current - 1, true); break;
        case "Delete": case "Backspace": if (fr) deleteSelected(fr); break;
        case "r": askDisposition("release"); break;
        case "w": askDisposition("rework"); break;
        case "x": askDisposition("scrap"); break;
        case "u": window.location.href = "/review"; break;
        case "?": toggleHelp(); break;
        case "Escape":
          toggleHelp(false);
          if (fr && fr.selected >= 0) selectBox(fr, -1);
          break;
        default: return;
      }
      e.preventDefault();
    });

    showProgress();
    setCurrent(current, false);
    if (frames.length) scrollToFrame(frames[current]);
    document.body.setAttribute("data-ready", "1");
  }

  if (document.body.classList.contains("queue-page")) initQueue();
  else if (document.body.classList.contains("unit-page")) initUnit();
})();
