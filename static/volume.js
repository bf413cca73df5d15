// The volume viewer: each slider asks the server for its slice's picture (never the whole cube).
// The picture updates when the slider is released or after a short pause while dragging.
(function () {
  var form = document.getElementById("volume-viewer");
  if (!form) return;
  form.querySelectorAll("input[type=range]").forEach(function (slider) {
    var kind = slider.name;
    var picture = document.getElementById("picture-" + kind);
    var output = document.getElementById("value-" + kind);
    var timer = null;
    function show() {
      var url = slider.dataset.url.replace("NUMBER", slider.value);
      if (picture.getAttribute("src") !== url) {
        picture.setAttribute("src", url);
        picture.alt = kind + " " + slider.value + ": salt probability over the amplitudes";
      }
    }
    slider.addEventListener("input", function () {
      output.textContent = slider.value;
      clearTimeout(timer);
      timer = setTimeout(show, 150);
    });
    slider.addEventListener("change", show);
  });
})();
