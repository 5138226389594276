// Landfall console: the few behaviours a page needs besides htmx. No inline scripts (the CSP
// forbids them), no build step.
(function () {
  "use strict";

  // Copy buttons: data-copy names the element whose value (or text) is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = "value" in source && source.tagName !== "PRE" ? source.value : source.textContent;
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { select(source); });
    } else {
      select(source);
      try { document.execCommand("copy"); done(); } catch (e) { /* selected: Ctrl-C works */ }
    }
  });

  function select(el) {
    if (el.select) { el.select(); return; }
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Fieldsets that belong to one choice of a select: data-auth (registry form), data-type
  // (component form). Hidden ones are disabled too, so their fields are not posted.
  function toggle(select, attribute) {
    var chosen = select.value;
    document.querySelectorAll("fieldset[" + attribute + "]").forEach(function (fs) {
      var on = fs.getAttribute(attribute).split(" ").indexOf(chosen) >= 0;
      fs.hidden = !on;
      fs.disabled = !on;
    });
  }

  function wire(id, attribute) {
    var select = document.getElementById(id);
    if (!select) return;
    select.addEventListener("change", function () { toggle(select, attribute); });
    toggle(select, attribute);
  }

  document.addEventListener("DOMContentLoaded", function () {
    wire("f-auth.type", "data-auth");
    wire("f-type", "data-type");
  });

  // Whether the page is live (the stream is open), for people (the "live" mark) and tests.
  document.addEventListener("htmx:sseOpen", function () { document.body.dataset.live = "open"; });
  document.addEventListener("htmx:sseError", function () { delete document.body.dataset.live; });

  // A live stream whose session ended: reload, which leads to the sign-in page.
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.detail && event.detail.type === "signed-out") window.location.reload();
  });
})();
