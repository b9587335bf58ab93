"""Names of GBCS Device Alert codes (four upper-case hex digits -> name).

Names follow the GBCS alert code table. Codes 8F85 to 8F88 come from newer use
cases (ECS100, ECS101, ECS102, ECS200) whose table entries are not in the public
sources we have; their names are descriptive and marked as such.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ALERT_NAMES", "alert_name"]

ALERT_NAMES: Final[dict[str, str]] = {
    # Voltage quality (network operator alerts)
    "8002": "Average RMS Voltage above Average RMS Over Voltage Threshold",
    "8006": "Average RMS Voltage below Average RMS Under Voltage Threshold",
    "8010": "Over Current",
    "8020": "RMS Voltage above Extreme Over Voltage Threshold",
    "8024": "RMS Voltage above Voltage Swell Threshold",
    "8028": "RMS Voltage below Extreme Under Voltage Threshold",
    "802C": "RMS Voltage below Voltage Sag Threshold",
    "8071": "GPF Device Log Changed",
    "8085": "Average RMS Voltage below Average RMS Over Voltage Threshold (returned below)",
    "8089": "Average RMS Voltage above Average RMS Under Voltage Threshold (returned above)",
    # Prepayment and local interaction
    "810D": "Combined Credit Below Low Credit Threshold (prepayment mode)",
    "810E": "Credit Added Locally",
    "8119": "Emergency Credit Has Become Available (prepayment mode)",
    "8145": "Clock adjusted (within tolerance)",
    "8154": "Immediate HAN Interface Command Received and Successfully Actioned",
    "8155": "Immediate HAN Interface Command Received but not Successfully Actioned",
    "8161": "User Interface Command Input and Successfully Actioned",
    "8162": "User Interface Command Input but not Successfully Actioned",
    "8168": "Supply Disabled then Armed - Activate Emergency Credit triggered",
    "8183": "Device joined SMHAN",
    "8184": "Valve tested",
    "819D": "GSME Command Not Retrieved",
    "819E": "Tap Off Message Response or Alert Failure",
    "81A0": "Smart Meter Integrity Issue - Warning",
    "81A1": "Battery Cover Closed",
    "81A2": "CH Connected to ESME",
    "81A3": "CH Disconnected from ESME",
    "81AA": "Emergency Credit Exhausted",
    "81AB": "Emergency Credit Activated",
    "81B9": "Meter Cover Closed",
    "81BD": "Supply Connect Failure (Valve or Load Switch)",
    "81C0": "Supply Disconnect Failure (Valve or Load Switch)",
    "81C1": "Terminal Cover Closed",
    "81C3": "Tilt Tamper",
    "81C6": "Clock not adjusted (outside tolerance)",
    # Critical and security alerts
    "8F01": "Active Power Import above Load Limit Threshold",
    "8F0A": "Billing Data Log Updated",
    "8F0C": "Clock not adjusted (adjustment greater than 10 seconds)",
    "8F0F": "Credit Below Disablement Threshold (prepayment mode)",
    "8F12": "CHF Device Log Changed",
    "8F1B": "Firmware Verification Failed At Power On",
    "8F1C": "Firmware Verification Failed",
    "8F1D": "GSME Power Supply Loss",
    "8F1E": "Integrity check of content or format of command failed",
    "8F1F": "Low Battery Capacity",
    # Comms Hub (sub-GHz, duty cycle) alerts
    "8F20": "Limited Duty Cycle Action Taken",
    "8F21": "Duty Cycle fallen below Normal-Limited Duty Cycle Threshold",
    "8F22": "Critical Duty Cycle Action Taken",
    "8F23": "Duty Cycle fallen below Limited-Critical Duty Cycle Threshold",
    "8F24": "Regulated Duty Cycle Action Taken",
    "8F25": "Duty Cycle fallen below Critical-Regulated Duty Cycle Threshold",
    "8F26": "Sub GHz Channel Changed",
    "8F27": "Sub GHz Channel Scan initiated",
    "8F28": "Sub GHz Channel Scan Request Assessment Outcome",
    "8F29": "Three Lost GSME Searches Failed",
    "8F2A": "Sub GHz Configuration Changed",
    "8F2B": "Sub GHz Channel not changed due to Frequency Agility Parameters",
    "8F2C": "Message Discarded Due to Duty Cycle Management",
    "8F2D": "No More Sub GHz Device Capacity",
    "8F30": "Source Does not have Authority for Command",
    "8F32": "Supply Armed",
    "8F33": "Supply Disabled then Armed - Load Limit triggered",
    "8F34": "Supply Enabled after Load Limit Restoration Period (Load Limit triggered)",
    "8F35": "Supply Outage Restored",
    "8F36": "Supply Outage Restored - Outage >= 3 minutes",
    "8F37": "Supply Outage Restored on Phase 1",
    "8F38": "Supply Outage Restored on Phase 1 - Outage >= 3 minutes",
    "8F39": "Supply Outage Restored on Phase 2",
    "8F3A": "Supply Outage Restored on Phase 2 - Outage >= 3 minutes",
    "8F3B": "Supply Outage Restored on Phase 3",
    "8F3C": "Supply Outage Restored on Phase 3 - Outage >= 3 minutes",
    "8F3D": "Trusted Source Authentication Failure",
    "8F3E": "Unauthorised Communication Access attempted",
    "8F3F": "Unauthorised Physical Access - Tamper Detect",
    "8F43": "Change in the executing Firmware version",
    "8F47": "Credit would cause Meter Balance to exceed Maximum Meter Balance Threshold",
    "8F48": "Device joining failed",
    "8F49": "Device joining succeeded",
    "8F4A": "Device Unjoining failed",
    "8F4B": "Device Unjoining succeeded",
    "8F4C": "Device's own Digital Signing Certificate replacement failed",
    "8F4D": "Device's own Digital Signing Certificate replacement succeeded",
    "8F4E": "Device's own Key Agreement Certificate replacement failed",
    "8F4F": "Device's own Key Agreement Certificate replacement succeeded",
    "8F51": "Duplicate UTRN entered",
    "8F52": "Event Log Cleared",
    "8F53": "Failed Authentication or Authorisation not covered by other codes",
    "8F57": "Supply interrupted",
    "8F58": "Supply interrupted on Phase 1",
    "8F59": "Supply interrupted on Phase 2",
    "8F5A": "Supply interrupted on Phase 3",
    "8F5B": "UTRN exceeds Maximum Credit Threshold",
    "8F60": "Unusual numbers of malformed, out-of-order or unexpected Commands received",
    "8F63": "UTRN not Authentic",
    "8F64": "UTRN not for this Device",
    "8F66": "Future-dated HAN Interface Command Successfully Actioned",
    "8F67": "Future-dated HAN Interface Command not Successfully Actioned",
    "8F69": "Device commissioned",
    "8F70": "Update Security Credentials",
    "8F72": "Firmware Verification Successful",
    "8F73": "Unauthorised Physical Access - Battery Cover Removed",
    "8F74": "Unauthorised Physical Access - Meter Cover Removed",
    "8F75": "Unauthorised Physical Access - Strong Magnetic field",
    "8F76": "Unauthorised Physical Access - Terminal Cover Removed",
    "8F77": "Unauthorised Physical Access - Second Terminal Cover Removed",
    "8F78": "Unauthorised Physical Access - Other",
    "8F82": "Remaining Battery Capacity reset",
    "8F83": "Disablement of Supply due to insufficient credit has been suspended",
    "8F84": "Failure to Deliver Remote Party Message to ESME",
    # Descriptive names (use cases ECS100, ECS101, ECS102, ECS200): not from the GBCS table.
    "8F85": "Auxiliary controller remote party message alert (ECS100)",
    "8F86": "Auxiliary controller input/output alert (ECS101)",
    "8F87": "Auxiliary controller input/output state alert (ECS102)",
    "8F88": "Auxiliary controller state report alert (ECS200)",
    "8F89": "Firmware Transfer Alert - Fail",
    "8F8A": "Firmware Transfer Alert - Success",
    "8F8B": "Read Firmware Version Alert",
}


def alert_name(code: str | None) -> str | None:
    """The name of a Device Alert code (case-insensitive, ``0x`` allowed), None if unknown."""
    if code is None:
        return None
    key = code.strip().upper()
    if key.startswith("0X"):
        key = key[2:]
    return ALERT_NAMES.get(key)
