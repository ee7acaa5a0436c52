// Small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Resource form: hide fields that do not apply to the chosen type.
  function syncKind(root) {
    root.querySelectorAll("form[data-resource-form]").forEach(function (form) {
      var kind = form.querySelector("[name=kind]");
      if (!kind) return;
      form.setAttribute("data-kind", kind.value);
      if (!kind.dataset.bound) {
        kind.dataset.bound = "1";
        kind.addEventListener("change", function () { form.setAttribute("data-kind", kind.value); });
      }
    });
  }
  // Click a <pre class="copy"> to copy its text.
  document.addEventListener("click", function (event) {
    var pre = event.target.closest && event.target.closest("pre.copy");
    if (!pre || !navigator.clipboard) return;
    navigator.clipboard.writeText(pre.innerText).then(function () {
      pre.classList.add("copied");
      setTimeout(function () { pre.classList.remove("copied"); }, 1200);
    }).catch(function () {});
  });
  document.addEventListener("DOMContentLoaded", function () { syncKind(document); });
  document.addEventListener("htmx:load", function (event) { syncKind(event.target); });
})();

// Sign-in links carry the one-time code in the URL fragment (#code=...), which browsers never
// send to the server (so no access log holds it): fill the code field from it.
(function () {
  function fillCode() {
    var match = /(?:^|[#&])code=([A-Za-z0-9]+)/.exec(window.location.hash);
    var field = document.querySelector("[data-testid=code-form] input[name=code]");
    if (match && field) {
      field.value = match[1];
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }
  document.addEventListener("DOMContentLoaded", fillCode);
  window.addEventListener("hashchange", fillCode);
})();
