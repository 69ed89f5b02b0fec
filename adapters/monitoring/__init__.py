"""Remote monitoring: vital signs from devices and patient apps, thresholds, and alerts.

- `vitals`: the vital signs taken (heart rate, blood pressure, SpO2, body weight, glucose,
  body temperature), which Observations are readings, and their shape on the way in:
  checked and converted to the stored UCUM unit (a transform, before validation), or
  refused with a 422 naming the element.
- `units`: UCUM conversion through ucumvert and pint.
- `plans`: a patient's bands per measure from the Goals of an active CarePlan, defaults
  per code, and who is told.
- `alerts`: the trigger, inside the reading's transaction, that raises one Flag and one
  Communication per patient and vital sign until the Flag is acknowledged.
- `plugin.install` wires them to the service.
"""
