// Starts Swagger UI on /api/docs (a file of its own: the page's CSP allows no inline script).
window.addEventListener("load", function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({url: node.dataset.specUrl, dom_id: "#swagger-ui", deepLinking: true});
});
