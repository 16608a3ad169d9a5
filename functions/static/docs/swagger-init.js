// Swagger UI for the app's own schema, from the vendored bundle: no inline script, no other host.
// The page names the schema's URL under the root path or stage it was served at.
"use strict";
window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.specUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,
});
