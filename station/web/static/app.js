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

  window.trichoCsrf = csrf;
})();
