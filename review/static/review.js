// mpt review: the only script. A form is sent once: its buttons are disabled on submit,
// so a double click cannot post a decision twice (the registry would refuse it anyway).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  for (const button of form.querySelectorAll("button[type=submit]")) {
    setTimeout(() => { button.disabled = true; }, 0);
  }
});
