// Keyboard shortcuts of the review station. Every page works without this file; it only adds keys:
// h heat map, d defect (then 1-9 or Enter for the kind, Esc cancels), n normal, u unusable, c comment.
(function () {
  "use strict";

  function typing(target) {
    // Keys typed into a text box are text, never commands.
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "textarea" || (tag === "input" && target.type !== "checkbox") || target.isContentEditable;
  }

  function submitWith(form, label) {
    var button = form.querySelector('button[name="label"][value="' + label + '"]');
    if (!button) return;
    if (typeof form.requestSubmit === "function") form.requestSubmit(button);
    else button.click();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("decide");
    var heat = document.getElementById("heat");
    var kind = document.getElementById("kind");
    var comment = document.getElementById("comment");
    var hint = document.getElementById("defect-hint");
    var defectMode = false;

    function setDefectMode(on) {
      defectMode = on;
      if (!form) return;
      form.classList.toggle("defect-mode", on);
      if (hint) hint.hidden = !on;
      if (on && kind) kind.focus();
      if (!on && kind && document.activeElement === kind) kind.blur();
    }

    if (comment) {
      comment.addEventListener("keydown", function (event) {
        if (event.key === "Escape") comment.blur();
      });
    }

    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
      if (typing(event.target)) return;
      var key = event.key;
      if (key === "h" && heat) {
        heat.checked = !heat.checked;
        event.preventDefault();
        return;
      }
      if (!form) return;
      if (defectMode) {
        if (key === "Escape") { setDefectMode(false); event.preventDefault(); return; }
        if (key === "Enter" || key === "d") { event.preventDefault(); submitWith(form, "defect"); return; }
        var digit = parseInt(key, 10);
        if (digit >= 1 && kind && digit < kind.options.length) {
          kind.selectedIndex = digit;
          event.preventDefault();
          submitWith(form, "defect");
        }
        return;
      }
      if (key === "d") { event.preventDefault(); setDefectMode(true); }
      else if (key === "n") { event.preventDefault(); submitWith(form, "normal"); }
      else if (key === "u") { event.preventDefault(); submitWith(form, "unusable"); }
      else if (key === "c" && comment) { event.preventDefault(); comment.focus(); }
    });
  });
})();
