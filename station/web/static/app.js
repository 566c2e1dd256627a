// The technician's page: a little JavaScript, no build step, no inline scripts (CSP default-src 'self').
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Buttons with data-busy: show progress and block double submits.
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function () {
      var btn = form.querySelector("button[data-busy]");
      if (!btn) return;
      if (form.dataset.sent) { return; }
      form.dataset.sent = "1";
      btn.textContent = btn.dataset.busy;
      btn.classList.add("busy");
      setTimeout(function () { btn.disabled = true; }, 0);
    });
  });

  // Zone "other…": typing a free zone selects the radio button.
  var other = document.getElementById("zone_other");
  var otherRadio = document.getElementById("zone-other-radio");
  if (other && otherRadio) {
    other.addEventListener("input", function () { otherRadio.checked = true; });
    other.addEventListener("focus", function () { otherRadio.checked = true; });
    var form = document.getElementById("capture-form");
    form.addEventListener("submit", function (ev) {
      if (otherRadio.checked && !other.value.trim()) {
        ev.preventDefault();
        delete form.dataset.sent;
        other.focus();
        other.classList.add("invalid");
      }
    });
  }

  // Live view: MJPEG stream; if it breaks, show snapshots once a second and retry the stream.
  var live = document.getElementById("live");
  if (live) {
    var streamUrl = live.getAttribute("src");
    var snapTimer = null;
    live.addEventListener("error", function () {
      if (snapTimer) return;
      snapTimer = setInterval(function () {
        live.src = live.dataset.snapshot + "?t=" + Date.now();
      }, 1000);
      setTimeout(function () { clearInterval(snapTimer); snapTimer = null; live.src = streamUrl + "?r=" + Date.now(); }, 15000);
    });
  }

  // Live figures beside the stream; the hardware capture button arrives here as button_presses.
  var panel = document.getElementById("live-figures");
  if (panel) {
    var presses = null;
    var set = function (id, text, cls) {
      var el = document.getElementById(id);
      if (!el) return;
      el.textContent = text;
      el.className = "v" + (cls ? " " + cls : "");
    };
    var poll = function () {
      if (document.hidden) { setTimeout(poll, 1500); return; }
      fetch(panel.dataset.url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) return;
          var a = d.analysis || {}, q = a.quality || {};
          set("lf-count", a.hair_count != null ? String(a.hair_count) : "–");
          if (q.sharpness != null) {
            set("lf-focus", Math.round(q.sharpness * 100) + " %", q.sharpness >= 0.5 ? "good" : "bad");
            var exp = "OK", cls = "good";
            if (q.clipped_fraction > 0.02 || q.mean_level > 0.85) { exp = "too bright"; cls = "bad"; }
            else if (q.dark_fraction > 0.05 || q.mean_level < 0.15) { exp = "too dark"; cls = "bad"; }
            set("lf-exposure", exp + " (" + Math.round(q.mean_level * 100) + " %)", cls);
          }
          set("lf-fps", d.streaming ? d.fps.toFixed(0) + " fps" : "off");
          var verdict = document.getElementById("lf-verdict");
          if (verdict) {
            if (a.error) { verdict.textContent = "Live analysis: " + a.error; verdict.className = "live-verdict bad"; }
            else if (a.reasons && a.reasons.length) { verdict.textContent = a.reasons[0]; verdict.className = "live-verdict bad"; }
            else if (q.sharpness != null) { verdict.textContent = "Ready to capture"; verdict.className = "live-verdict good"; }
          }
          if (presses !== null && d.button_presses > presses) {
            var f = document.getElementById("capture-form");
            if (f && !f.dataset.sent && f.reportValidity()) { f.requestSubmit(document.getElementById("capture-btn")); }
          }
          presses = d.button_presses;
        })
        .catch(function () {})
        .then(function () { setTimeout(poll, 700); });
    };
    poll();
  }

  // Result image: click to zoom to full resolution at the clicked point, click again to fit; wheel zooms.
  var zoom = document.getElementById("zoom");
  var img = document.getElementById("zoom-img");
  if (zoom && img) {
    var scale = 1;
    var apply = function (s, fx, fy) {
      var natural = img.naturalWidth || 2028;
      scale = s;
      if (s <= 0) {
        zoom.classList.remove("zoomed");
        img.style.width = "";
        return;
      }
      zoom.classList.add("zoomed");
      img.style.width = Math.round(natural * s) + "px";
      zoom.scrollLeft = fx * img.clientWidth - zoom.clientWidth / 2;
      zoom.scrollTop = fy * img.clientHeight - zoom.clientHeight / 2;
    };
    var frac = function (ev) {
      var r = img.getBoundingClientRect();
      return [(ev.clientX - r.left) / r.width, (ev.clientY - r.top) / r.height];
    };
    img.addEventListener("click", function (ev) {
      var f = frac(ev);
      apply(zoom.classList.contains("zoomed") ? 0 : 1, f[0], f[1]);
    });
    zoom.addEventListener("wheel", function (ev) {
      if (!zoom.classList.contains("zoomed") && ev.deltaY > 0) return;
      ev.preventDefault();
      var f = frac(ev);
      var cur = zoom.classList.contains("zoomed") ? scale : img.clientWidth / (img.naturalWidth || 2028);
      var next = Math.min(3, Math.max(0.25, cur * (ev.deltaY < 0 ? 1.25 : 0.8)));
      if (next <= img.parentNode.clientWidth / (img.naturalWidth || 2028)) { apply(0); return; }
      apply(next, f[0], f[1]);
    }, { passive: false });
  }

  // Follow-up guidance (issue 8): tell the station which patient and zone is being prepared;
  // while it has a baseline, poll the guidance ~5 times a second and draw the arrows.
  var guide = document.getElementById("guidance");
  var captureForm = document.getElementById("capture-form");
  if (guide && captureForm) {
    var targetKey = null, guideTimer = null, sendTimer = null;
    var currentTarget = function () {
      var pid = (document.getElementById("patient_id") || {}).value || "";
      var zr = captureForm.querySelector('input[name="zone"]:checked');
      var zone = zr ? zr.value : "";
      if (zone === "other") { zone = (document.getElementById("zone_other") || {}).value || ""; }
      pid = pid.trim(); zone = zone.trim();
      return (pid && zone && /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(pid)) ? { patient_id: pid, zone: zone } : {};
    };
    var txt = function (id, t) { var el = document.getElementById(id); if (el) el.textContent = t; };
    var draw = function (g) {
      if (!g || !g.patient_id) { guide.hidden = true; return; }
      guide.hidden = false;
      var cls = g.state === "on_target" ? "on-target" : (g.state === "adjust" ? "adjust" : (g.state === "not_found" ? "not-found" : ""));
      guide.className = "guidance " + cls;
      var arrow = document.getElementById("g-arrow"), turn = document.getElementById("g-turn");
      if (g.state === "no_baseline") {
        txt("g-state", "First visit of this zone"); txt("g-msg", g.message || "");
        txt("g-offset", "–"); txt("g-rot", "–"); txt("g-overlap", "–");
        arrow.setAttribute("x2", "0"); arrow.setAttribute("y2", "0"); turn.setAttribute("d", "");
        return;
      }
      if (!g.success) {
        txt("g-state", g.state === "error" ? "Guidance error" : (g.state ? "Baseline spot not in view" : "Finding the baseline spot…"));
        txt("g-msg", g.message || g.error || ""); txt("g-offset", "–"); txt("g-rot", "–"); txt("g-overlap", "–");
        arrow.setAttribute("x2", "0"); arrow.setAttribute("y2", "0"); turn.setAttribute("d", "");
        return;
      }
      txt("g-state", g.on_target ? "ON TARGET" : "Move the lens");
      txt("g-msg", g.on_target ? "Same spot as the baseline visit: capture now." : g.message);
      txt("g-offset", g.offset_mm.toFixed(2) + " mm off");
      txt("g-rot", (g.turn_deg >= 0 ? "+" : "") + g.turn_deg.toFixed(1) + "° turn");
      txt("g-overlap", Math.round(g.overlap_pct) + " %");
      // arrow length: 1 mm = 40 units, capped at the dial
      var len = Math.hypot(g.move_x_mm, g.move_y_mm), k = len > 0 ? Math.min(40, 40 * len) / len : 0;
      var ax = g.on_target ? 0 : g.move_x_mm * k, ay = g.on_target ? 0 : g.move_y_mm * k;
      arrow.setAttribute("x2", ax.toFixed(1)); arrow.setAttribute("y2", ay.toFixed(1));
      arrow.setAttribute("visibility", Math.hypot(ax, ay) < 3 ? "hidden" : "visible");
      // turn: an arc on the dial, clockwise for positive turn_deg
      var tdeg = Math.max(-90, Math.min(90, g.turn_deg * 6));
      if (Math.abs(g.turn_deg) > (g.max_rotation_deg || 3) / 3) {
        var r = 46, a0 = -Math.PI / 2, a1 = a0 + tdeg * Math.PI / 180;
        turn.setAttribute("d", "M" + (r * Math.cos(a0)).toFixed(1) + "," + (r * Math.sin(a0)).toFixed(1) +
          " A" + r + "," + r + " 0 0," + (tdeg > 0 ? 1 : 0) + " " + (r * Math.cos(a1)).toFixed(1) + "," + (r * Math.sin(a1)).toFixed(1));
      } else { turn.setAttribute("d", ""); }
    };
    var pollGuide = function () {
      guideTimer = null;
      if (targetKey === null) return;
      if (document.hidden) { guideTimer = setTimeout(pollGuide, 1000); return; }
      fetch(guide.dataset.url, { headers: { "Accept": "application/json" }, credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d) draw(d.guidance); })
        .catch(function () {})
        .then(function () { if (targetKey !== null && !guideTimer) guideTimer = setTimeout(pollGuide, 180); });
    };
    var sendTarget = function () {
      var t = currentTarget(), key = JSON.stringify(t);
      if (key === targetKey || (targetKey === null && key === "{}")) return;
      fetch(guide.dataset.targetUrl, { method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf },
        body: key })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          targetKey = key === "{}" ? null : key;
          draw(d ? d.guidance : null);
          if (targetKey !== null && !guideTimer) pollGuide();
        })
        .catch(function () {});
    };
    var later = function () { clearTimeout(sendTimer); sendTimer = setTimeout(sendTarget, 400); };
    captureForm.addEventListener("input", later);
    captureForm.addEventListener("change", later);
    sendTarget();
  }

  window.trichoCsrf = csrf;
})();
