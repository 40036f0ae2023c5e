// flaskops.stack sample app: live character counter for the note field.
(function () {
  "use strict";
  document.querySelectorAll(".counter[data-for]").forEach(function (counter) {
    var field = document.getElementById(counter.getAttribute("data-for"));
    if (!field) { return; }
    var update = function () {
      counter.textContent = field.value.length + " / " + field.maxLength;
    };
    field.addEventListener("input", update);
    update();
  });
})();
