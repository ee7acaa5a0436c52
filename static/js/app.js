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
