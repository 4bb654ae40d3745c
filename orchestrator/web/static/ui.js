// misalignment-farm pages: the only script, and only an enhancement. Without it, a finding's
// link reloads the page with ?finding=N#step-K (the server marks the step, the browser
// scrolls to it) and a running episode's page refreshes itself (<noscript> meta refresh).
// It never builds HTML from strings: new steps are nodes of the server's own escaped page.
"use strict";

(function () {
  const POLL_MS = 2000;

  function mark(link) {
    document.querySelectorAll(".finding.selected").forEach((el) => {
      el.classList.remove("selected");
      el.querySelector(".select")?.removeAttribute("aria-current");
    });
    document.querySelectorAll(".marked").forEach((el) => el.classList.remove("marked"));
    const finding = link.closest(".finding");
    finding.classList.add("selected");
    link.setAttribute("aria-current", "true");
    const target = document.getElementById(link.dataset.target);
    const changes = (link.dataset.changes || "").split(" ").filter(Boolean)
      .map((id) => document.getElementById(id)).filter(Boolean);
    for (const el of [target, ...changes]) {
      if (!el || el === finding) continue;
      el.classList.add("marked");
      const folded = el.closest("details");
      if (folded) folded.open = true;
    }
    if (target && target !== finding) {
      target.scrollIntoView({ block: "start" });
      target.focus({ preventScroll: true });
    }
    // the diff beside the transcript scrolls on its own: bring the change into it too
    const aside = document.getElementById("evidence");
    if (changes.length && aside && getComputedStyle(aside).position === "sticky") {
      changes[0].scrollIntoView({ block: "nearest" });
    }
    history.replaceState(null, "", link.getAttribute("href"));
  }

  function onClick(event) {
    const link = event.target.closest(".finding a.select");
    if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    mark(link);
  }

  function replace(fresh, id) {
    const mine = document.getElementById(id);
    const theirs = fresh.getElementById(id);
    if (mine && theirs) mine.replaceWith(document.importNode(theirs, true));
  }

  // A running episode: fetch its page again, append the steps not shown yet, refresh the
  // head, the findings and the diff; stop once it is no longer running.
  async function poll(page) {
    let fresh;
    try {
      const response = await fetch(location.pathname + location.search, {
        credentials: "same-origin", cache: "no-store", redirect: "error",
      });
      if (!response.ok) throw new Error(String(response.status));
      fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    } catch (error) {
      setTimeout(() => poll(page), POLL_MS * 3);
      return;
    }
    const steps = document.getElementById("steps");
    const arrived = fresh.querySelectorAll("#steps > li.step");
    arrived.forEach((step) => {
      if (!document.getElementById(step.id)) steps.appendChild(document.importNode(step, true));
    });
    if (arrived.length) document.getElementById("no-steps")?.remove();
    ["episode-head", "findings", "diff"].forEach((id) => replace(fresh, id));
    const still = fresh.getElementById("episode")?.dataset.live;
    page.dataset.live = still || "";
    if (still) setTimeout(() => poll(page), POLL_MS);
    else replace(fresh, "steps"); // finished: the steps again, with the findings they cite
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.addEventListener("click", onClick);
    const page = document.getElementById("episode");
    if (page && page.dataset.live) setTimeout(() => poll(page), POLL_MS);
  });
})();
