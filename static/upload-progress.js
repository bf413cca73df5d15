// Upload forms (form[data-progress], the forms that send files): send the files with XMLHttpRequest so the page can show a progress
// bar while they upload and, while the server works, the time elapsed against an estimate.
// The estimate comes from the form's data-seconds-per-tile (measured by the server from its own
// answers) and the pictures' sizes (the 101-pixel tiles a section is cut into); without it only the
// elapsed time is shown. Without JavaScript the form posts as usual. The clicked submit button's
// name and value go with the data (FormData leaves them out): views tell forms and actions apart by it.
// Forms with data-confirm ask that question first (the job page's cancel button): the pages'
// Content-Security-Policy allows no inline handler, so the question is asked from here.
(function () {
  "use strict";
  var TILE = 101, STRIDE = 51;   // geovision.tiling: tile size and tile size minus the overlap

  function tiles(width, height) {
    var across = width <= TILE ? 1 : Math.ceil((width - TILE) / STRIDE) + 1;
    var down = height <= TILE ? 1 : Math.ceil((height - TILE) / STRIDE) + 1;
    return across * down;
  }

  function countTiles(files) {   // a promise of the number of tiles of the pictures (SEG-Y: 0)
    var jobs = Array.prototype.map.call(files, function (file) {
      if (!/^image\//.test(file.type) || !window.createImageBitmap) { return Promise.resolve(0); }
      return createImageBitmap(file).then(function (bitmap) {
        var n = tiles(bitmap.width, bitmap.height);
        bitmap.close();
        return n;
      }, function () { return 0; });
    });
    return Promise.all(jobs).then(function (counts) { return counts.reduce(function (a, b) { return a + b; }, 0); });
  }

  function attach(form) {
    var box = document.createElement("div");
    box.className = "upload-progress";
    box.hidden = true;
    box.innerHTML = '<progress max="1" value="0"></progress> <span class="upload-status" role="status"></span>';
    form.appendChild(box);
    var bar = box.querySelector("progress"), status = box.querySelector(".upload-status");

    form.addEventListener("submit", function (event) {
      if (!window.FormData || !window.XMLHttpRequest) { return; }
      event.preventDefault();
      var data = new FormData(form), files = form.querySelector("input[type=file]");
      var clicked = event.submitter;
      if (clicked && clicked.name) { data.append(clicked.name, clicked.value); }
      var perTile = parseFloat(form.dataset.secondsPerTile || "0");
      var submits = form.querySelectorAll("[type=submit]");
      submits.forEach(function (b) { b.disabled = true; });
      box.hidden = false;
      var estimate = null, timer = null, started = 0;
      countTiles(files ? files.files : []).then(function (n) {
        if (perTile > 0 && n > 0) { estimate = Math.max(1, n * perTile); }
      });
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action") || window.location.href);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) {
          bar.value = e.loaded / e.total;
          status.textContent = "Uploading " + Math.round(100 * e.loaded / e.total) + " %";
        }
      };
      xhr.upload.onload = function () {
        started = Date.now();
        bar.value = 0;
        timer = setInterval(function () {
          var s = (Date.now() - started) / 1000;
          if (estimate) {
            bar.value = Math.min(0.99, s / estimate);
            status.textContent = "Working: " + s.toFixed(0) + " s of about " + estimate.toFixed(0) + " s";
          } else {
            bar.removeAttribute("value");   // indeterminate
            status.textContent = "Working: " + s.toFixed(0) + " s";
          }
        }, 250);
      };
      xhr.onload = function () {
        clearInterval(timer);
        if (xhr.responseURL && xhr.responseURL.split("#")[0] !== window.location.href.split("#")[0]) {
          window.location.assign(xhr.responseURL);   // redirected: the results or the job page
          return;
        }
        document.open();
        document.write(xhr.responseText);   // the form again, with its errors or answers
        document.close();
      };
      xhr.onerror = function () {
        clearInterval(timer);
        submits.forEach(function (b) { b.disabled = false; });
        box.hidden = true;
        status.textContent = "The upload failed (connection lost): try again.";
      };
      xhr.send(data);
    });
  }

  document.querySelectorAll("form[data-progress]").forEach(attach);
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });
}());
