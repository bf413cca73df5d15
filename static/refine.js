// Fixing a salt mask with clicks (POST /salt/result/<id>/refine, geovision.refine on the server).
// "Fix the mask with clicks" turns the overlay into a click target: a click says "salt here", a
// shift-click (or a click with "not salt" ticked, for touch screens) "not salt here". All clicks so
// far are sent each time; the overlay is replaced by the refined answer's. Undo and Reset resend.
(function () {
  document.querySelectorAll("section.refine").forEach(function (panel) {
    var article = panel.closest("article");
    var img = article.querySelector("img.overlay");
    var link = article.querySelector("a.overlay-link");
    var layer = article.querySelector(".click-layer");
    if (!img || !link || !layer) return;
    var original = img.getAttribute("src");
    var coverage = article.querySelector(".coverage strong");
    var originalCoverage = coverage ? coverage.textContent : "";
    var tools = panel.querySelector(".refine-tools"), help = panel.querySelector(".refine-help");
    var status = panel.querySelector(".refine-status"), negative = panel.querySelector(".refine-negative");
    var undo = panel.querySelector(".refine-undo"), reset = panel.querySelector(".refine-reset");
    var save = panel.querySelector(".refine-save"), correctionUrl = null;
    var clicks = [], editing = false, busy = false;
    panel.hidden = false;

    function drawDots() {
      layer.querySelectorAll(".click-dot").forEach(function (d) { d.remove(); });
      clicks.forEach(function (c) {
        var dot = document.createElement("span");
        dot.className = "click-dot " + (c.salt ? "salt" : "not-salt");
        dot.style.left = (100 * (c.x + 0.5) / img.naturalWidth) + "%";
        dot.style.top = (100 * (c.y + 0.5) / img.naturalHeight) + "%";
        dot.title = (c.salt ? "salt" : "not salt") + " at (" + c.x + ", " + c.y + ")";
        layer.appendChild(dot);
      });
      undo.disabled = reset.disabled = clicks.length === 0;
      save.disabled = true;           // enabled again once the redrawn answer is back
    }

    function send() {
      drawDots();
      if (clicks.length === 0) {
        img.setAttribute("src", original);
        if (coverage) coverage.textContent = originalCoverage;
        status.textContent = "Back to the model's mask.";
        return;
      }
      busy = true;
      status.textContent = "Redrawing…";
      var started = performance.now();
      fetch(panel.dataset.refineUrl, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": panel.dataset.csrf},
        body: JSON.stringify({clicks: clicks})
      }).then(function (r) {
        return r.json().then(function (body) { return {ok: r.ok, body: body}; });
      }).then(function (answer) {
        busy = false;
        if (!answer.ok) {
          status.textContent = (answer.body.error && answer.body.error.message) || "The server could not redraw the mask.";
          clicks.pop();
          drawDots();
          return;
        }
        img.setAttribute("src", answer.body.overlay_url);
        img.dataset.predictionId = answer.body.prediction_id;
        correctionUrl = answer.body.correction_url;
        save.disabled = false;
        if (coverage) coverage.textContent = (answer.body.coverage * 100).toFixed(2) + " %";
        status.innerHTML = "";
        status.append(clicks.length + " click(s), redrawn in " + Math.round(performance.now() - started) + " ms. ");
        var open = document.createElement("a");
        open.href = answer.body.result_url;
        open.textContent = "Open this fixed answer";
        status.append(open);
      }).catch(function () {
        busy = false;
        status.textContent = "The server could not be reached.";
        clicks.pop();
        drawDots();
      });
    }

    link.addEventListener("click", function (event) {
      if (!editing) return;            // not editing: the overlay opens at full resolution as before
      event.preventDefault();
      if (busy) return;
      var box = img.getBoundingClientRect();
      var x = Math.floor((event.clientX - box.left) * img.naturalWidth / box.width);
      var y = Math.floor((event.clientY - box.top) * img.naturalHeight / box.height);
      x = Math.min(Math.max(x, 0), img.naturalWidth - 1);
      y = Math.min(Math.max(y, 0), img.naturalHeight - 1);
      clicks.push({x: x, y: y, salt: !(event.shiftKey || negative.checked)});
      send();
    });
    panel.querySelector(".refine-start").addEventListener("click", function () {
      editing = true;
      tools.hidden = help.hidden = false;
      this.hidden = true;
      article.classList.add("editing");
    });
    panel.querySelector(".refine-done").addEventListener("click", function () {
      editing = false;
      tools.hidden = help.hidden = true;
      panel.querySelector(".refine-start").hidden = false;
      article.classList.remove("editing");
    });
    save.addEventListener("click", function () {
      if (!correctionUrl) return;
      save.disabled = true;
      fetch(correctionUrl, {method: "POST", credentials: "same-origin",
                            headers: {"Accept": "application/json", "X-CSRFToken": panel.dataset.csrf}})
        .then(function (r) { return r.json().then(function (body) { return {ok: r.ok, body: body}; }); })
        .then(function (answer) {
          if (!answer.ok) { status.textContent = (answer.body.error || {}).message || "Not saved."; save.disabled = false; return; }
          status.innerHTML = "";
          status.append("Saved as a correction (training data). ");
          var list = document.createElement("a");
          list.href = answer.body.corrections_url;
          list.textContent = "Your corrections";
          status.append(list);
        })
        .catch(function () { status.textContent = "The server could not be reached."; save.disabled = false; });
    });
    undo.addEventListener("click", function () { if (!busy) { clicks.pop(); send(); } });
    reset.addEventListener("click", function () { if (!busy) { clicks = []; send(); } });
  });
})();
