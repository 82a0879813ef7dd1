/* Lightbox for patchforensics pages (inlined; no external code).
   Every <a class="pf-zoom"> opens in it: data-full lists the images to show side by side
   ("a.png|b.png"), data-caption the text under them. Arrow keys step, Escape closes. */
(function () {
  "use strict";
  var links = Array.prototype.slice.call(document.querySelectorAll("a.pf-zoom"));
  if (!links.length) { return; }
  var box = document.createElement("div");
  box.className = "pf-lightbox";
  box.hidden = true;
  box.innerHTML = '<button class="pf-close" type="button" aria-label="close">\u00d7</button>' +
    '<button class="pf-prev" type="button" aria-label="previous">\u2039</button>' +
    '<figure><div class="pf-frames"></div><figcaption></figcaption></figure>' +
    '<button class="pf-next" type="button" aria-label="next">\u203a</button>';
  document.body.appendChild(box);
  var frames = box.querySelector(".pf-frames");
  var caption = box.querySelector("figcaption");
  var current = -1;

  function show(i) {
    current = (i + links.length) % links.length;
    var link = links[current];
    var sources = (link.getAttribute("data-full") || link.getAttribute("href")).split("|");
    frames.textContent = "";
    sources.forEach(function (src) {
      var img = document.createElement("img");
      img.src = src;
      img.alt = src;
      frames.appendChild(img);
    });
    caption.textContent = (current + 1) + " / " + links.length + "  \u2014  " +
      (link.getAttribute("data-caption") || "");
    box.setAttribute("data-index", String(current));
    box.hidden = false;
  }

  function close() { box.hidden = true; }

  links.forEach(function (link, i) {
    link.addEventListener("click", function (event) { event.preventDefault(); show(i); });
  });
  box.querySelector(".pf-close").addEventListener("click", close);
  box.querySelector(".pf-prev").addEventListener("click", function () { show(current - 1); });
  box.querySelector(".pf-next").addEventListener("click", function () { show(current + 1); });
  box.addEventListener("click", function (event) { if (event.target === box) { close(); } });
  document.addEventListener("keydown", function (event) {
    if (box.hidden) { return; }
    if (event.key === "ArrowRight") { show(current + 1); }
    else if (event.key === "ArrowLeft") { show(current - 1); }
    else if (event.key === "Escape") { close(); }
  });
})();
