// tc_delay: a WIDTH-bit signal delayed by DEPTH clock cycles (a chain of DEPTH registers).
// DEPTH = 0 passes the signal straight through. Used for the array's systolic skew (row r of the
// activations enters r cycles late) and deskew (column c of the outputs waits COLS-1-c cycles).
// Parameters:
//   WIDTH  bits of the signal
//   DEPTH  cycles of delay (>= 0)
module tc_delay #(
    parameter WIDTH = 8,
    parameter DEPTH = 1
) (
    input  wire             clk,
    input  wire [WIDTH-1:0] d,
    output wire [WIDTH-1:0] q
);
    generate
        if (DEPTH == 0) begin : through
            assign q = d;
        end else begin : chain
            reg [DEPTH*WIDTH-1:0] stage;  // stage i at bits [i*WIDTH +: WIDTH]; the oldest on top
            always @(posedge clk)
                stage <= {stage, d};      // shift up by one word; the oldest drops out
            assign q = stage[(DEPTH-1)*WIDTH +: WIDTH];
        end
    endgenerate
endmodule
