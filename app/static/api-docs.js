// Starts Swagger UI on /openapi.json. A file of its own, not an inline script, so the
// Content-Security-Policy (scripts from this site only) holds on the docs page too.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
