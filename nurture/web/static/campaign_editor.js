// The campaign editor's save as you go, on top of htmx (each form posts itself on change, see the templates).
// This script only keeps people from losing work: it warns before leaving a page with a change that is not
// saved yet, says so when a save did not reach the server, and tries again at the next change or in 5 s.
(function () {
  "use strict";
  var RETRY_MS = 5000;
  document.querySelectorAll("form[data-autosave=on]").forEach(function (form) {
    var dirty = false;
    var retry = null;
    var status = function () { return document.getElementById("save-status"); };
    form.addEventListener("input", function () { dirty = true; });
    form.addEventListener("htmx:afterRequest", function (event) {
      var ok = event.detail.successful && !(status() && status().classList.contains("conflict"));
      if (ok) {
        dirty = false;
        return;
      }
      if (!event.detail.xhr || event.detail.xhr.status === 0) {
        if (status()) {
          status().textContent = "Not saved: the connection dropped. Your changes are still on this page; trying again…";
        }
        clearTimeout(retry);
        retry = setTimeout(function () { window.htmx.trigger(form, "change"); }, RETRY_MS);
      }
    });
    window.addEventListener("beforeunload", function (event) {
      if (dirty) {
        event.preventDefault();
        event.returnValue = "";
      }
    });
    // A Save pressed while a save as you go is on its way waits for it, then posts with the new revision
    // (posting on the old one would be refused as someone else's change).
    var submitAfterSave = false;
    form.addEventListener("submit", function (event) {
      if (form.classList.contains("htmx-request")) {
        event.preventDefault();
        submitAfterSave = true;
        return;
      }
      dirty = false;
    });
    form.addEventListener("htmx:afterRequest", function () {
      if (submitAfterSave) {
        submitAfterSave = false;
        setTimeout(function () { form.requestSubmit(); }, 0);
      }
    });
  });
})();
