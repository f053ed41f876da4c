# camfleet ULP program (ESP32 ULP-FSM): count rising edges on one RTC GPIO (a PIR output) while
# the chip deep-sleeps, and wake it after `need` of them. Assembled by micropython-esp32-ulp
# (scripts/ulp) into esp32_node/ulp_pir.py; the node fills the data words and starts it
# (ulp_pir.arm). The ULP timer runs `entry` once per period (esp32.ULP.set_wakeup_period).
# The main CPU routes the pin to the RTC IO mux (MUX_SEL, FUN_IE) before sleeping, so this
# program only reads RTC_GPIO_IN: channels 0..15 in one 16-bit read.

#define DR_REG_RTCIO_BASE            0x3ff48400
#define RTC_GPIO_IN_REG              (DR_REG_RTCIO_BASE + 0x24)
#define RTC_GPIO_IN_NEXT_S           14
#define DR_REG_RTCCNTL_BASE          0x3ff48000
#define RTC_CNTL_LOW_POWER_ST_REG    (DR_REG_RTCCNTL_BASE + 0xc0)
#define RTC_CNTL_RDY_FOR_WAKEUP_S    19
#define RTC_CNTL_STATE0_REG          (DR_REG_RTCCNTL_BASE + 0x18)
#define RTC_CNTL_ULP_CP_SLP_TIMER_EN_S 24

mask:   .long 0             # word 0: bit of the watched RTC channel (set by the CPU)
need:   .long 1             # word 1: rising edges before waking the chip
prev:   .long 0             # word 2: the pin's level at the previous run
count:  .long 0             # word 3: rising edges seen so far

entry:
        move r3, prev
        ld r2, r3, 0                # r2 = previous level
        move r3, mask
        ld r1, r3, 0                # r1 = the pin's bit
        READ_RTC_REG(RTC_GPIO_IN_REG, RTC_GPIO_IN_NEXT_S, 16)
        and r0, r0, r1              # r0 = this pin's level now (0 or its bit)
        move r3, prev
        st r0, r3, 0
        move r0, r0
        jump done, eq               # low now: no edge
        move r2, r2
        jump edge, eq               # low before, high now: a rising edge
        jump done

edge:
        move r3, count
        ld r0, r3, 0
        add r0, r0, 1
        st r0, r3, 0
        move r3, need
        ld r1, r3, 0
        sub r1, r1, r0              # need - count
        jump wake_up, eq
        jump wake_up, ov            # count went past need
        jump done

wake_up:
        READ_RTC_REG(RTC_CNTL_LOW_POWER_ST_REG, RTC_CNTL_RDY_FOR_WAKEUP_S, 1)
        and r0, r0, 1
        jump done, eq               # the chip is not asleep yet: try again next period
        move r3, count
        move r0, 0
        st r0, r3, 0                # count afresh after this wake
        wake
        WRITE_RTC_REG(RTC_CNTL_STATE0_REG, RTC_CNTL_ULP_CP_SLP_TIMER_EN_S, 1, 0)

done:
        halt
